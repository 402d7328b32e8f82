//go:build !unix

package uploader

// openNonBlock: no FIFOs to block on here.
const openNonBlock = 0
