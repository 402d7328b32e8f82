package store

// codec_v4.go reads the records of schema 4 and older, for the rewrite to
// schema 5 (migrate.go): path records keyed by the whole path with the
// root as a string, content records with the upload name as a string.

import (
	"fmt"
)

// The first bytes of the records of schema 4 and older. recordFormat
// (codec.go) is format 1 of every record.
const (
	contentFormatV3 byte = 2 // a content record with front-coded trace ids (schema 3)
	chainFormatV4   byte = 3 // a path record with segments (schema 4)
)

// decodePathV4 decodes a path record of schema 4 or older; the path is
// its key.
func decodePathV4(key, v []byte) (PathRecord, error) {
	d := decoder{b: v}
	format := d.byte1()
	if format != recordFormat && format != chainFormatV4 {
		d.fail()
	}
	r := PathRecord{Path: string(key)}
	r.Root = d.str()
	r.Hash = d.hash()
	r.Size = d.varint()
	r.ModTime = d.time()
	r.Dev = d.uvarint()
	r.Ino = d.uvarint()
	r.State = State(d.str())
	r.Attempts = int(d.varint())
	r.NextAttempt = d.time()
	r.LastError = d.str()
	r.FirstSeen = d.time()
	r.UpdatedAt = d.time()
	r.RemovedAt = d.time()
	if format == chainFormatV4 {
		r.Start = d.varint()
		r.End = d.varint()
		r.Print = d.print()
		r.Prior = int(d.uvarint())
		r.More = d.uvarint()&1 != 0
	}
	return r, d.finish("path", key)
}

// decodeContentV4 decodes a content record of schema 4 or older: format 1
// (trace ids as strings) or contentFormatV3 (front-coded).
func decodeContentV4(key, v []byte) (Content, error) {
	var c Content
	if len(key) != len(c.Hash) {
		return c, fmt.Errorf("decode content key %x: %w", key, ErrCorrupt)
	}
	copy(c.Hash[:], key)
	d := decoder{b: v}
	format := d.byte1()
	if format != recordFormat && format != contentFormatV3 {
		d.fail()
	}
	c.Filename = d.str()
	c.Size = d.varint()
	if format == recordFormat {
		c.TraceIDs = d.strs()
	} else {
		c.TraceIDs = d.frontCoded()
	}
	c.UploadedAt = d.time()
	return c, d.finish("content", key)
}
