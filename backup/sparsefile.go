package backup

import (
	"bytes"
	"fmt"
	"os"
)

// SparseFile writes restored volume data into a file, seeking over
// all-zero 4 KiB blocks so that holes stay holes, and sets the final size
// on Close (the tail of a volume is often a hole).
type SparseFile struct {
	f    *os.File
	size int64
	off  int64
}

// NewSparseFile writes into f, which is truncated to size at Close.
func NewSparseFile(f *os.File, size int64) *SparseFile {
	return &SparseFile{f: f, size: size}
}

const zeroBlock = 4096

func (s *SparseFile) Write(p []byte) (int, error) {
	n := 0
	runStart := -1 // start in p of non-zero data not yet written
	runOff := s.off
	flush := func(end int) error {
		if runStart >= 0 {
			if _, err := s.f.WriteAt(p[runStart:end], runOff); err != nil {
				return err
			}
			runStart = -1
		}
		return nil
	}
	for i := 0; i < len(p); {
		// Pieces aligned to 4 KiB of the file, so holes are block holes.
		take := min(zeroBlock-int((s.off+int64(i))%zeroBlock), len(p)-i)
		if bytes.Equal(p[i:i+take], zeros[:take]) {
			if err := flush(i); err != nil {
				return n, err
			}
		} else if runStart < 0 {
			runStart, runOff = i, s.off+int64(i)
		}
		i += take
		n = i
	}
	if err := flush(len(p)); err != nil {
		return 0, err
	}
	s.off += int64(len(p))
	return n, nil
}

// Close sets the size and closes the file.
func (s *SparseFile) Close() error {
	if s.off > s.size {
		s.f.Close()
		return fmt.Errorf("%s: %d bytes of data for a %d-byte volume", s.f.Name(), s.off, s.size)
	}
	if err := s.f.Truncate(s.size); err != nil {
		s.f.Close()
		return err
	}
	// No fsync: restores stage here and the import that follows syncs
	// what it writes.
	return s.f.Close()
}

// WriteAt writes a data run at its offset (sparse members): what is not
// written stays a hole.
func (s *SparseFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("%s: data beyond the %d-byte volume", s.f.Name(), s.size)
	}
	if end := off + int64(len(p)); end > s.off {
		s.off = end
	}
	return s.f.WriteAt(p, off)
}
