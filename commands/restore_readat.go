package commands

import (
	"errors"
	"io"
)

// ReadAt lets the backup reader look ahead in a backup file, to start
// the key derivations of the next chunks early (backup/kdfahead.go); it
// reads the file at offsets, not through the progress count. Stdin or a
// pipe answers with an error and the reader keeps to the stream.
func (c *restoreCounter) ReadAt(p []byte, off int64) (int, error) {
	if ra, ok := c.r.(io.ReaderAt); ok {
		return ra.ReadAt(p, off)
	}
	return 0, errors.New("restore source cannot be read at offsets")
}
