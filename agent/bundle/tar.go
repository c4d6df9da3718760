package bundle

// A tar reader for bundles, instead of archive/tar: the router binary's
// size budget (6 MiB on mips) has no room for archive/tar's generality
// (sparse files, every header dialect, os/user), and a bundle needs little:
// regular files, the directories tar adds for them, and names that may be
// longer than the 100 bytes of a plain header. Read: POSIX ustar (with its
// name prefix), GNU tar's default format (with 'L' long names), and pax
// extended headers ('x': path and size; others ignored), as GNU tar, bsdtar
// and Go's archive/tar write them. Every header's checksum is verified, so
// a corrupt archive is reported as such rather than misread.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const blockSize = 512

// Tar entry types a bundle may meet.
const (
	tarReg     = '0'
	tarRegOld  = 0 // pre-POSIX regular file
	tarLink    = '1'
	tarSymlink = '2'
	tarChar    = '3'
	tarBlock   = '4'
	tarDir     = '5'
	tarFifo    = '6'
	tarPAX     = 'x'
	tarPAXG    = 'g'
	tarGNULong = 'L'
)

// maxMetaEntry bounds a pax or GNU long-name entry.
const maxMetaEntry = 8 << 10

type tarHeader struct {
	Name     string
	Size     int64
	Typeflag byte
}

type tarReader struct {
	r       io.Reader
	left    int64 // bytes of the current entry not yet read
	pad     int64 // padding after it
	hdr     [blockSize]byte
	pending struct {
		name string
		size int64
		set  bool
	}
}

func newTarReader(r io.Reader) *tarReader { return &tarReader{r: r} }

var errTarChecksum = errors.New("tar header checksum mismatch (corrupt archive)")

// Next skips what is left of the current entry and reads the next header;
// io.EOF at the end-of-archive block.
func (t *tarReader) Next() (*tarHeader, error) {
	for {
		if _, err := io.CopyN(io.Discard, t.r, t.left+t.pad); err != nil {
			return nil, unexpected(err)
		}
		t.left, t.pad = 0, 0
		if _, err := io.ReadFull(t.r, t.hdr[:]); err != nil {
			// A bare EOF between entries: the archive ends without its
			// end-of-archive blocks (archive/tar tolerates that too); the
			// caller still checks that every manifest file came.
			return nil, err
		}
		if t.hdr == [blockSize]byte{} {
			return nil, io.EOF
		}
		if err := t.checksum(); err != nil {
			return nil, err
		}
		h := &tarHeader{Typeflag: t.hdr[156]}
		size, err := octal(t.hdr[124:136])
		if err != nil {
			return nil, err
		}
		h.Size = size
		h.Name = cstr(t.hdr[0:100])
		if string(t.hdr[257:263]) == "ustar\x00" { // POSIX: a name prefix
			if p := cstr(t.hdr[345:500]); p != "" {
				h.Name = p + "/" + h.Name
			}
		}
		t.left, t.pad = size, (blockSize-size%blockSize)%blockSize
		switch h.Typeflag {
		case tarPAX, tarGNULong, tarPAXG:
			if size > maxMetaEntry {
				return nil, fmt.Errorf("tar extended header of %d bytes", size)
			}
			meta := make([]byte, size)
			if _, err := io.ReadFull(t.r, meta); err != nil {
				return nil, unexpected(err)
			}
			t.left = 0
			switch h.Typeflag {
			case tarGNULong:
				t.pending.name, t.pending.set = cstr(meta), true
			case tarPAX:
				if err := t.pax(meta); err != nil {
					return nil, err
				}
			}
			continue
		}
		if t.pending.set {
			if t.pending.name != "" {
				h.Name = t.pending.name
			}
			if t.pending.size >= 0 && t.pending.size != 0 {
				h.Size, t.left = t.pending.size, t.pending.size
				t.pad = (blockSize - h.Size%blockSize) % blockSize
			}
			t.pending.name, t.pending.size, t.pending.set = "", 0, false
		}
		if h.Typeflag == tarRegOld {
			h.Typeflag = tarReg
		}
		if h.Typeflag != tarReg {
			// Links, devices, directories carry no data here.
			t.left, t.pad = 0, 0
			if h.Typeflag == tarDir || h.Typeflag == tarSymlink || h.Typeflag == tarLink {
				t.left, t.pad = size, (blockSize-size%blockSize)%blockSize
			}
		}
		return h, nil
	}
}

// pax reads the records "LEN key=value\n" of a pax header: path and size.
func (t *tarReader) pax(b []byte) error {
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return errors.New("malformed pax header")
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return errors.New("malformed pax header")
		}
		k, v, ok := strings.Cut(string(b[sp+1:n-1]), "=")
		if !ok {
			return errors.New("malformed pax header")
		}
		switch k {
		case "path":
			t.pending.name = v
		case "size":
			s, err := strconv.ParseInt(v, 10, 64)
			if err != nil || s < 0 {
				return errors.New("malformed pax size")
			}
			t.pending.size = s
		}
		t.pending.set = true
		b = b[n:]
	}
	return nil
}

// Read reads the current entry's data.
func (t *tarReader) Read(p []byte) (int, error) {
	if t.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.left {
		p = p[:t.left]
	}
	n, err := t.r.Read(p)
	t.left -= int64(n)
	if err == io.EOF && t.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, unexpected(err)
}

func (t *tarReader) checksum() error {
	want, err := octal(t.hdr[148:156])
	if err != nil {
		return errTarChecksum
	}
	var sum int64
	for i, b := range t.hdr {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += int64(b)
	}
	if sum != want {
		return errTarChecksum
	}
	return nil
}

// octal reads a NUL- or space-terminated octal field. The base-256 form
// (for sizes of 8 GiB and more) is refused: no bundle is that large.
func octal(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		return 0, errors.New("tar size field in base-256 form: an entry of 8 GiB or more")
	}
	s := strings.Trim(string(b), " \x00")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("tar header field %q is not octal (corrupt archive)", s)
	}
	return n, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// unexpected turns a bare EOF in the middle of an entry into
// io.ErrUnexpectedEOF (a truncated archive).
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
