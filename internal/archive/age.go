package archive

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"golang.org/x/crypto/ssh"
)

// An encrypted snapshot is the tar+zstd stream, byte for byte, inside an
// age file (age-encryption.org/v1): `age -d -i key | zstd -d | tar -x`
// restores it with standard tools. age authenticates every 64 KiB chunk
// and the end of the stream, so a changed, cut or extended object fails
// to decrypt before anything of it is committed.

// ErrIdentity: an encrypted snapshot cannot be opened with the identity
// given, because there is none or it is not one of the snapshot's
// recipients (exit 2: a configuration to fix, not a damaged snapshot).
var ErrIdentity = errors.New("cannot decrypt the snapshot")

// Recipients are the public keys a backup encrypts to.
type Recipients []age.Recipient

// Identities are the private keys a restore decrypts with.
type Identities []age.Identity

// ParseRecipients reads SNAPSHOT_ENCRYPTION_RECIPIENTS: age recipients
// (age1...) and ssh-ed25519 / ssh-rsa public keys (authorized_keys lines,
// comment included), separated by commas or line breaks; empty entries
// and lines starting with '#' are ignored. An error names the entry that
// is not one, unless the value looks like a private key: that is never
// echoed. An empty value gives no recipients (encryption off).
func ParseRecipients(value string) (Recipients, error) {
	if looksPrivate(value) {
		return nil, errors.New("holds a private key (AGE-SECRET-KEY-... or an ssh PRIVATE KEY block); recipients are public keys (age1..., ssh-ed25519 ...): the private key belongs only to the restore's SNAPSHOT_ENCRYPTION_IDENTITY")
	}
	var rs Recipients
	n := 0
	for _, line := range strings.Split(value, "\n") {
		for _, entry := range strings.Split(line, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" || strings.HasPrefix(entry, "#") {
				continue
			}
			n++
			r, err := parseRecipient(entry)
			if err != nil {
				return nil, fmt.Errorf("entry %d, %s, is not an age recipient (age1...) or an ssh-ed25519/ssh-rsa public key: %w", n, shorten(entry), err)
			}
			rs = append(rs, r)
		}
	}
	return rs, nil
}

func parseRecipient(s string) (age.Recipient, error) {
	if strings.HasPrefix(s, "ssh-") {
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			// agessh quotes the whole key back; the entry is named once.
			return nil, errors.New("not a valid ssh-ed25519 or ssh-rsa public key")
		}
		return r, nil
	}
	rs, err := age.ParseRecipients(strings.NewReader(s))
	if err != nil {
		return nil, errors.New("not a valid age recipient")
	}
	return rs[0], nil
}

// shorten quotes a public key for a message, cut to a length that still
// tells keys apart.
func shorten(s string) string {
	const max = 72
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func looksPrivate(s string) bool {
	u := strings.ToUpper(s)
	return strings.Contains(u, "AGE-SECRET-KEY-") || strings.Contains(u, "PRIVATE KEY")
}

// ParseIdentities reads SNAPSHOT_ENCRYPTION_IDENTITY: an age identity
// file (AGE-SECRET-KEY-1... lines; age-keygen's comment lines are fine)
// or an unencrypted ssh private key (ed25519 or RSA, PEM as ssh-keygen
// writes it). Errors never quote the value, nor the parsers' own errors,
// which might.
func ParseIdentities(value string) (Identities, error) {
	value = strings.TrimSpace(value)
	if strings.Contains(value, "-----BEGIN") {
		id, err := agessh.ParseIdentity([]byte(value + "\n"))
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			return nil, errors.New("is an ssh private key protected by a passphrase, which a job cannot type; use an unencrypted key (ssh-keygen -p -N '' -f key) or an age identity")
		case err != nil:
			return nil, errors.New("is not an unencrypted ed25519 or RSA ssh private key, nor an age identity")
		}
		return Identities{id}, nil
	}
	ids, err := age.ParseIdentities(strings.NewReader(value))
	if err != nil {
		return nil, errors.New("is not an age identity (AGE-SECRET-KEY-1..., as age-keygen writes it) nor an unencrypted ssh private key")
	}
	return Identities(ids), nil
}

// Encrypt returns a writer that encrypts to rs into w. Close writes the
// last chunk; it does not close w.
func Encrypt(w io.Writer, rs Recipients) (io.WriteCloser, error) {
	enc, err := age.Encrypt(w, rs...)
	if err != nil {
		return nil, fmt.Errorf("starting age encryption: %w", err)
	}
	return enc, nil
}

// EncryptedSize is an upper bound on the age file of n plaintext bytes:
// the header (a few hundred bytes per recipient, more for RSA), the
// nonce, and 16 bytes of tag per 64 KiB chunk.
func EncryptedSize(n int64, rs Recipients) int64 {
	if n < 0 {
		return n
	}
	return n + (n/(64<<10)+1)*16 + 16 + int64(len(rs)+1)*1024
}

// Decrypt opens the age file read from r with ids, reading its header.
// No ids, or none the file was encrypted to, gives ErrIdentity; a header
// that does not parse or authenticate gives ErrCorrupt. Errors of r
// itself (the store's) are returned as they are, here and from the
// reader; every other failure to decrypt the rest wraps ErrCorrupt.
//
// The rest is decrypted on a goroutine of its own, a few MiB ahead of
// the reader, so that decryption (one core) overlaps the parallel zstd
// decoding instead of taking turns with it. Close stops it; the caller
// closes r afterwards.
func Decrypt(r io.Reader, ids Identities) (io.ReadCloser, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the snapshot is encrypted (age) and SNAPSHOT_ENCRYPTION_IDENTITY is not set", ErrIdentity)
	}
	src := &errRecorder{r: r}
	dr, err := age.Decrypt(src, ids...)
	if err != nil {
		if src.err != nil {
			return nil, src.err
		}
		if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
			// The per-identity errors say nothing an operator can use and
			// are kept out of the message on principle.
			return nil, fmt.Errorf("%w: the snapshot is encrypted to other keys than SNAPSHOT_ENCRYPTION_IDENTITY's", ErrIdentity)
		}
		return nil, fmt.Errorf("%w: reading the age header: %w", ErrCorrupt, err)
	}
	return newReadAhead(&decryptReader{r: dr, src: src}, aheadBlocks, aheadBlockSize), nil
}

// Decryption runs this far ahead of the reader: aheadBlocks blocks of
// aheadBlockSize in flight (16 age chunks each), plus the two the reader
// and the decrypter hold.
const (
	aheadBlocks    = 4
	aheadBlockSize = 1 << 20
)

// readAhead reads r on a goroutine into a few blocks, handed over in
// order; memory is bounded by the blocks, allocated once.
type readAhead struct {
	full chan block
	free chan []byte
	done chan struct{}
	exit chan struct{}
	once sync.Once

	cur, held []byte
	err       error
}

var errReadAfterClose = errors.New("read after Close")

type block struct {
	b   []byte
	err error
}

func newReadAhead(r io.Reader, blocks, size int) *readAhead {
	a := &readAhead{
		full: make(chan block, blocks),
		free: make(chan []byte, blocks+2),
		done: make(chan struct{}),
		exit: make(chan struct{}),
	}
	for range blocks + 2 {
		a.free <- make([]byte, size)
	}
	go func() {
		defer close(a.exit)
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.done:
				return
			}
			n, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case a.full <- block{b[:n], err}:
			case <-a.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *readAhead) Read(p []byte) (int, error) {
	select {
	case <-a.done:
		return 0, errReadAfterClose
	default:
	}
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.held != nil {
			a.free <- a.held[:cap(a.held)]
			a.held = nil
		}
		select {
		case blk := <-a.full:
			a.held, a.cur, a.err = blk.b, blk.b, blk.err
		case <-a.done:
			return 0, errReadAfterClose
		}
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it: at most the one read it
// is in the middle of.
func (a *readAhead) Close() error {
	a.once.Do(func() { close(a.done) })
	<-a.exit
	return nil
}

// errRecorder remembers the error of the reader below age, so that a
// store failure is told from a failed authentication.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

type decryptReader struct {
	r   io.Reader
	src *errRecorder
}

func (d *decryptReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == nil || err == io.EOF {
		return n, err
	}
	if d.src.err != nil {
		return n, d.src.err
	}
	return n, fmt.Errorf("%w: decrypting: %w (the object was changed or cut after it was written)", ErrCorrupt, err)
}

// DecryptAt opens the age file of size bytes in src for random access:
// it returns the plaintext as an io.ReaderAt and its size. Opening reads
// the header and the last chunk (age authenticates the plaintext's size
// by it); each ReadAt then reads only the 64 KiB chunks it covers, each
// authenticated, so a reader of an index fetches what it needs and no
// more. Errors are classified as Decrypt's: ErrIdentity, ErrCorrupt, or
// src's own error unchanged.
func DecryptAt(src io.ReaderAt, size int64, ids Identities) (io.ReaderAt, int64, error) {
	if len(ids) == 0 {
		return nil, 0, fmt.Errorf("%w: the snapshot is encrypted (age) and SNAPSHOT_ENCRYPTION_IDENTITY is not set", ErrIdentity)
	}
	ra, n, err := age.DecryptReaderAt(markedAt{src}, size, ids...)
	if err != nil {
		return nil, 0, classifyAt(err, "opening")
	}
	return plainAt{ra}, n, nil
}

// markedAt marks the errors of the store's reader, so that they are told
// from authentication failures after age wrapped or passed them on.
type markedAt struct{ r io.ReaderAt }

type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func (m markedAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := m.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

type plainAt struct{ r io.ReaderAt }

func (p plainAt) ReadAt(b []byte, off int64) (int, error) {
	n, err := p.r.ReadAt(b, off)
	if err != nil && err != io.EOF {
		err = classifyAt(err, "decrypting")
	}
	return n, err
}

func classifyAt(err error, op string) error {
	if se, ok := errors.AsType[*sourceError](err); ok {
		return se.err
	}
	if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
		return fmt.Errorf("%w: the snapshot is encrypted to other keys than SNAPSHOT_ENCRYPTION_IDENTITY's", ErrIdentity)
	}
	return fmt.Errorf("%w: %s: %w (the object was changed or cut after it was written)", ErrCorrupt, op, err)
}
