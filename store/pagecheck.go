package store

// pagecheck.go owns the structural check of a state file at open: every
// page reachable from the current meta page is in the file, of the right
// type, referenced once, and its elements lie inside it. It reads page
// headers and element tables only, never keys or values, so it costs a
// small fraction of a walk of every key.

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// bbolt's on-disk format (version 2), as go.etcd.io/bbolt/internal/common
// lays it out.
const (
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elementSize     = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeader    = 16 // root pgid u64, sequence u64
	branchPageFlag  = 0x01
	leafPageFlag    = 0x02
	metaPageFlag    = 0x04
	freelistFlag    = 0x10
	bucketLeafFlag  = 0x01
	boltMagic       = 0xED0CDAED
	noFreelist      = ^uint64(0)
	maxTreeDepth    = 64
	metaRootOffset  = pageHeaderSize + 16 // after magic, version, pageSize, flags
	metaPgidOffset  = metaRootOffset + bucketHeader + 8
	metaTxidOffset  = metaPgidOffset + 8
	metaSizeOffset  = pageHeaderSize + 8
	metaMagicOffset = pageHeaderSize
)

var ne = binary.NativeEndian

// pageChecker walks the pages of one mapped file.
type pageChecker struct {
	data     []byte
	pageSize uint64
	hwm      uint64 // pages in use: ids below it
	seen     []uint64
}

// checkPages maps file (size bytes) read-only and checks the tree of the
// meta page whose transaction id is txid (the one bbolt opened), and its
// freelist page when the freelist is stored. Call it inside protect: a
// fault on the mapping is a corrupt file.
func checkPages(file string, size int64, txid uint64) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open state %s: %w", file, err)
	}
	defer f.Close()
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map state %s: %w", file, err)
	}
	defer unix.Munmap(data)

	meta, err := currentMeta(data, txid)
	if err != nil {
		return &corruptError{err}
	}
	c := &pageChecker{data: data, pageSize: uint64(ne.Uint32(meta[metaSizeOffset:]))}
	c.hwm = ne.Uint64(meta[metaPgidOffset:])
	if c.hwm*c.pageSize > uint64(len(data)) {
		return &corruptError{fmt.Errorf("file is %d bytes but its pages reach %d bytes (truncated)", len(data), c.hwm*c.pageSize)}
	}
	// Map the pages in use in one call rather than one fault each (it
	// fails harmlessly on kernels before 5.14).
	_ = unix.Madvise(data[:c.hwm*c.pageSize], unix.MADV_POPULATE_READ)
	c.seen = make([]uint64, (c.hwm+63)/64)
	if err := c.bucket(meta[metaRootOffset:metaRootOffset+bucketHeader], 0); err != nil {
		return &corruptError{err}
	}
	if fl := ne.Uint64(meta[metaRootOffset+bucketHeader:]); fl != noFreelist {
		if err := c.freelist(fl); err != nil {
			return &corruptError{err}
		}
	}
	return nil
}

// currentMeta returns the meta page (0 or 1) of transaction txid.
func currentMeta(data []byte, txid uint64) ([]byte, error) {
	if len(data) < 2*pageHeaderSize {
		return nil, fmt.Errorf("file is too small for its meta pages")
	}
	size := uint64(ne.Uint32(data[metaSizeOffset:]))
	for i := range uint64(2) {
		if size < 512 || (i+1)*size > uint64(len(data)) {
			break
		}
		m := data[i*size : (i+1)*size]
		if ne.Uint16(m[8:]) == metaPageFlag && ne.Uint32(m[metaMagicOffset:]) == boltMagic && ne.Uint64(m[metaTxidOffset:]) == txid {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no meta page of transaction %d", txid)
}

// page returns the bytes of page id, its overflow pages included, after
// checking its header.
func (c *pageChecker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d: outside the pages in use (2 to %d)", id, c.hwm-1)
	}
	p := c.data[id*c.pageSize:]
	if got := ne.Uint64(p); got != id {
		return nil, fmt.Errorf("page %d: its header says page %d", id, got)
	}
	span := uint64(ne.Uint32(p[12:])) + 1
	if id+span > c.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages reach past the pages in use", id, span-1)
	}
	for q := id; q < id+span; q++ {
		if c.seen[q/64]&(1<<(q%64)) != 0 {
			return nil, fmt.Errorf("page %d: referenced twice", q)
		}
		c.seen[q/64] |= 1 << (q % 64)
	}
	return p[:span*c.pageSize], nil
}

// bucket checks a bucket from its header (a leaf value or the meta's root).
func (c *pageChecker) bucket(hdr []byte, depth int) error {
	if len(hdr) < bucketHeader {
		return fmt.Errorf("bucket header of %d bytes", len(hdr))
	}
	root := ne.Uint64(hdr)
	if root == 0 {
		// An inline bucket: its one leaf page follows the header.
		return c.node(hdr[bucketHeader:], 0, depth+1)
	}
	return c.tree(root, depth+1)
}

// tree checks the page id and everything below it.
func (c *pageChecker) tree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	p, err := c.page(id)
	if err != nil {
		return err
	}
	return c.node(p, id, depth)
}

// node checks the elements of a branch or leaf page p (page id, or 0 when
// inline in a bucket value) and descends into its children and buckets.
func (c *pageChecker) node(p []byte, id uint64, depth int) error {
	if len(p) < pageHeaderSize {
		return fmt.Errorf("page %d: cut short", id)
	}
	flags, count := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
	}
	if pageHeaderSize+count*elementSize > uint64(len(p)) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := p[at : at+elementSize]
		if flags == branchPageFlag {
			pos, ksize := uint64(ne.Uint32(e)), uint64(ne.Uint32(e[4:]))
			if at+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("page %d: key %d lies outside the page", id, i)
			}
			if err := c.tree(ne.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		eflags, pos, ksize, vsize := ne.Uint32(e), uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		end := at + pos + ksize + vsize
		if end > uint64(len(p)) {
			return fmt.Errorf("page %d: element %d lies outside the page", id, i)
		}
		if eflags&bucketLeafFlag != 0 {
			if err := c.bucket(p[at+pos+ksize:end], depth); err != nil {
				return err
			}
		}
	}
	return nil
}

// freelist checks the stored freelist page: its type, and that the pages
// it lists are in use by nothing else it can tell.
func (c *pageChecker) freelist(id uint64) error {
	p, err := c.page(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags := ne.Uint16(p[8:]); flags != freelistFlag {
		return fmt.Errorf("freelist: page %d has type %#x", id, flags)
	}
	n, first := uint64(ne.Uint16(p[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count did not fit: it is the first element
		n, first = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if first+n*8 > uint64(len(p)) {
		return fmt.Errorf("freelist: %d ids do not fit in page %d", n, id)
	}
	for i := range n {
		free := ne.Uint64(p[first+i*8:])
		if free < 2 || free >= c.hwm {
			return fmt.Errorf("freelist: page %d is outside the pages in use", free)
		}
		if c.seen[free/64]&(1<<(free%64)) != 0 {
			return fmt.Errorf("freelist: page %d is free and in use", free)
		}
	}
	return nil
}
