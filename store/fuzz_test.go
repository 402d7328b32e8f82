package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The record decoders read bytes from a file that may be damaged: on any
// input they must return a record or an error wrapping ErrCorrupt, never
// panic, and whatever they accept must survive encode→decode unchanged.
// Records built from arbitrary fields must survive encode→decode too. Seed
// corpora: testdata/fuzz/<FuzzName>.

func FuzzDecodeRecord(f *testing.F) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC)
	h := Hash{1, 2, 3}
	f.Add(uint8(0), []byte("/r/a.json"), encodePath(&PathRecord{Path: "/r/a.json", Root: "/r", Hash: h, Size: 10, ModTime: now, Dev: 1, Ino: 2, State: StateUploaded, FirstSeen: now}, 3))
	f.Add(uint8(0), []byte("/r/b.jsonl"), encodePath(&PathRecord{Path: "/r/b.jsonl", Root: "/r/", Hash: h, Size: 10, ModTime: now, State: "odd", Attempts: 2, NextAttempt: now,
		LastError: "503", FirstSeen: now, UpdatedAt: now, RemovedAt: now, Start: 3, End: 9, Prior: 2, More: true, Print: Print{Head: [16]byte{1}}}, 0))
	f.Add(uint8(1), h[:], encodeContent(&Content{Hash: h, Filename: "a." + hashTag(h) + ".json", Size: 10, TraceIDs: []string{"t1", "t2"}, UploadedAt: now}, nil))
	f.Add(uint8(1), h[:], encodeContent(&Content{Hash: h, Filename: "a." + hashTag(h) + ".json", Size: 10, TraceIDs: []string{"t1"}, UploadedAt: now}, append(appendDirID(nil, 3), "a.json"...)))
	f.Add(uint8(1), h[:], encodeContent(&Content{Hash: h, Filename: "a.json"}, append(appendDirID(nil, 300), "a.json"...)))
	f.Add(uint8(1), h[:], encodeStub(append(appendDirID(nil, 3), "a.json"...)))
	f.Add(uint8(4), []byte("/r/a.json"), encodePathV4(&PathRecord{Path: "/r/a.json", Root: "/r", Hash: h, Size: 10, ModTime: now, Dev: 1, Ino: 2, State: StateUploaded, FirstSeen: now}))
	f.Add(uint8(5), h[:], encodeContentV1(&Content{Hash: h, Filename: "a.json", Size: 10, TraceIDs: []string{"t1", "t2"}, UploadedAt: now}))
	f.Add(uint8(5), h[:], encodeContentV3(&Content{Hash: h, Filename: "a.json", Size: 10, TraceIDs: []string{"t1", "t2"}, UploadedAt: now}))
	f.Add(uint8(2), h[:], encodeIntent(&Intent{Hash: h, Path: "/r/a.json", Filename: "a.json", Size: 10, Phase: PhaseCreate, StartedAt: now}))
	f.Add(uint8(3), []byte("t1"), encodeDelete(&Delete{TraceID: "t1", Hash: h, Attempts: 3, NextAttempt: now, LastError: "503", QueuedAt: now}))
	f.Add(uint8(0), []byte("k"), []byte{})
	f.Add(uint8(1), h[:], []byte{recordFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(uint8(3), []byte("t"), []byte{2})
	f.Fuzz(func(t *testing.T, kind uint8, key, v []byte) {
		switch kind % 6 {
		case 0:
			r, rootID, err := decodePath(string(key), v)
			if checkDecodeErr(t, "path", v, err) {
				r2, rootID2, err := decodePath(string(key), encodePath(&r, rootID))
				if err != nil || !reflect.DeepEqual(r, r2) || rootID != rootID2 {
					t.Fatalf("path %q: decoded %+v (root %d), re-encoded and decoded %+v (root %d), %v", v, r, rootID, r2, rootID2, err)
				}
			}
		case 4:
			// Schema 4 records are only read (by the rewrite to 5): each
			// that decodes must survive the new encoding.
			r, err := decodePathV4(key, v)
			if checkDecodeErr(t, "path v4", v, err) {
				r2, _, err := decodePath(r.Path, encodePath(&r, 0))
				if err != nil || !reflect.DeepEqual(r, r2) {
					t.Fatalf("path v4 %q: decoded %+v, in schema 5 %+v, %v", v, r, r2, err)
				}
			}
		case 5:
			c, err := decodeContentV4(key, v)
			if checkDecodeErr(t, "content v4", v, err) {
				c2, _, err := decodeContent(key, encodeContent(&c, nil))
				if err != nil || !reflect.DeepEqual(c, c2) {
					t.Fatalf("content v4 %q: decoded %+v, in schema 5 %+v, %v", v, c, c2, err)
				}
			}
		case 1:
			if holder, record, err := contentHolder(key, v); err == nil && !record {
				if got := encodeStub(holder); !bytes.Equal(got, v) {
					t.Fatalf("stub %q: holder %q encodes back to %q", v, holder, got)
				}
				return
			}
			c, holder, err := decodeContent(key, v)
			// The counting decoder agrees with the full one, error or not.
			if n, cerr := contentTraceCount(key, v); (cerr == nil) != (err == nil) || (err == nil && n != len(c.TraceIDs)) {
				t.Fatalf("content %q: contentTraceCount = %d, %v; decodeContent has %d ids, %v", v, n, cerr, len(c.TraceIDs), err)
			}
			if checkDecodeErr(t, "content", v, err) {
				c2, holder2, err := decodeContent(key, encodeContent(&c, holder))
				if err != nil || !reflect.DeepEqual(c, c2) || !bytes.Equal(holder, holder2) {
					t.Fatalf("content %q: decoded %+v, re-encoded and decoded %+v, %v", v, c, c2, err)
				}
			}
		case 2:
			in, err := decodeIntent(key, v)
			if checkDecodeErr(t, "intent", v, err) {
				in2, err := decodeIntent(key, encodeIntent(&in))
				if err != nil || !reflect.DeepEqual(in, in2) {
					t.Fatalf("intent %q: decoded %+v, re-encoded and decoded %+v, %v", v, in, in2, err)
				}
			}
		case 3:
			d, err := decodeDelete(key, v)
			if checkDecodeErr(t, "delete", v, err) {
				d2, err := decodeDelete(key, encodeDelete(&d))
				if err != nil || !reflect.DeepEqual(d, d2) {
					t.Fatalf("delete %q: decoded %+v, re-encoded and decoded %+v, %v", v, d, d2, err)
				}
			}
		}
	})
}

// checkDecodeErr fails unless err is nil or wraps ErrCorrupt; it reports
// whether the decode succeeded.
func checkDecodeErr(t *testing.T, what string, v []byte, err error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("decode %s %q: %v, want an error wrapping ErrCorrupt", what, v, err)
	}
	return err == nil
}

// fuzzTime is a UTC time from seconds and nanoseconds, or the zero time.
func fuzzTime(sec int64, nsec uint32) time.Time {
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec%1e9)).UTC()
}

func FuzzEncodeDecode(f *testing.F) {
	f.Add("/r/a.json", "/r", []byte{1, 2}, int64(10), int64(1764064800), uint32(5), uint64(1), uint64(2), "uploaded", int64(3), "503: slow down", "t1\x00t2")
	f.Add("", "", []byte{}, int64(-1), int64(-62135596800), uint32(0), uint64(0), uint64(1<<63), "", int64(-5), "", "")
	f.Add("/r/\n\xff.json", "/r", []byte{0xff}, int64(1<<62), int64(1<<40), uint32(999999999), ^uint64(0), ^uint64(0), "x", int64(1<<62), "é", "\x00")
	f.Fuzz(func(t *testing.T, p, root string, hb []byte, size, sec int64, nsec uint32, dev, ino uint64, state string, attempts int64, lastErr, ids string) {
		var h Hash
		copy(h[:], hb)
		tm := fuzzTime(sec, nsec)
		rec := PathRecord{Path: p, Root: root, Hash: h, Size: size, ModTime: tm, Dev: dev, Ino: ino, State: State(state),
			Attempts: int(attempts), NextAttempt: tm, LastError: lastErr, FirstSeen: tm, UpdatedAt: tm, RemovedAt: tm}
		got, _, err := decodePath(p, encodePath(&rec, 0))
		if err != nil || !reflect.DeepEqual(got, rec) {
			t.Fatalf("path record %+v: decoded %+v, %v", rec, got, err)
		}
		var traceIDs []string
		for i, start := 0, 0; i <= len(ids); i++ {
			if i == len(ids) || ids[i] == 0 {
				if i > start || len(ids) > 0 {
					traceIDs = append(traceIDs, ids[start:i])
				}
				start = i + 1
			}
		}
		c := Content{Hash: h, Filename: root, Size: size, TraceIDs: traceIDs, UploadedAt: tm}
		gotC, _, err := decodeContent(h[:], encodeContent(&c, nil))
		if err != nil || !reflect.DeepEqual(gotC, c) {
			t.Fatalf("content %+v: decoded %+v, %v", c, gotC, err)
		}
		_, base := filepath.Split(p)
		holder := append(appendDirID(nil, dev), base...)
		gotC, gotH, err := decodeContent(h[:], encodeContent(&c, holder))
		if err != nil || !reflect.DeepEqual(gotC, c) || !bytes.Equal(gotH, holder) {
			t.Fatalf("content %+v held by %q: decoded %+v held by %q, %v", c, holder, gotC, gotH, err)
		}
		in := Intent{Hash: h, Path: p, Filename: root, Size: size, Phase: Phase(attempts), StartedAt: tm}
		gotI, err := decodeIntent(h[:], encodeIntent(&in))
		if err != nil || !reflect.DeepEqual(gotI, in) {
			t.Fatalf("intent %+v: decoded %+v, %v", in, gotI, err)
		}
		d := Delete{TraceID: state, Hash: h, Attempts: int(attempts), NextAttempt: tm, LastError: lastErr, QueuedAt: tm}
		gotD, err := decodeDelete([]byte(state), encodeDelete(&d))
		if err != nil || !reflect.DeepEqual(gotD, d) {
			t.Fatalf("delete %+v: decoded %+v, %v", d, gotD, err)
		}
	})
}
