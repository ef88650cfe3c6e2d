package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"
)

// sshKeyPair is an ed25519 key as ssh-keygen writes it: the
// authorized_keys line and the unencrypted OpenSSH PEM.
func sshKeyPair(t *testing.T) (public, private string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " ops@example", string(pem.EncodeToMemory(block))
}

func TestParseRecipients(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	b, _ := age.GenerateX25519Identity()
	sshPub, sshPriv := sshKeyPair(t)
	rs, err := ParseRecipients(a.Recipient().String() + ", " + b.Recipient().String() + "\n# ops key\n" + sshPub + "\n")
	if err != nil || len(rs) != 3 {
		t.Fatalf("ParseRecipients = %d, %v; want 3", len(rs), err)
	}
	if rs, err := ParseRecipients(""); err != nil || len(rs) != 0 {
		t.Errorf("empty: %d, %v", len(rs), err)
	}
	_, err = ParseRecipients(a.Recipient().String() + ",age1notakey")
	if err == nil || !strings.Contains(err.Error(), `entry 2, "age1notakey"`) {
		t.Errorf("bad entry: %v, want it named", err)
	}
	_, err = ParseRecipients("ssh-ed25519 AAAAnotbase64")
	if err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Errorf("bad ssh key: %v", err)
	}
	// A private key pasted in the wrong place is refused and not echoed.
	for _, secret := range []string{a.String(), sshPriv} {
		_, err = ParseRecipients(secret)
		if err == nil || !strings.Contains(err.Error(), "holds a private key") {
			t.Errorf("private key as recipient: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), secret[30:50]) {
			t.Errorf("the private key is in the error: %v", err)
		}
	}
}

func TestParseIdentities(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	_, sshPriv := sshKeyPair(t)
	keygen := "# created: 2026-12-02T14:00:00Z\n# public key: " + a.Recipient().String() + "\n" + a.String() + "\n"
	for what, v := range map[string]string{"age-keygen file": keygen, "bare": a.String(), "ssh": sshPriv} {
		if ids, err := ParseIdentities(v); err != nil || len(ids) != 1 {
			t.Errorf("%s: %d, %v", what, len(ids), err)
		}
	}
	broken := strings.Replace(a.String(), "AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1Q", 1)
	for _, v := range []string{broken, "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA" + broken[20:] + "\n-----END OPENSSH PRIVATE KEY-----", a.Recipient().String()} {
		_, err := ParseIdentities(v)
		if err == nil {
			t.Errorf("%.30q accepted", v)
			continue
		}
		if strings.Contains(err.Error(), broken[17:40]) {
			t.Errorf("the key is in the error: %v", err)
		}
	}
}

func TestEncryptDecrypt(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	sshPub, sshPriv := sshKeyPair(t)
	rs, err := ParseRecipients(a.Recipient().String() + "," + sshPub)
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 5 chunks
	var enc bytes.Buffer
	w, err := Encrypt(&enc, rs)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := EncryptedSize(int64(len(plain)), rs); int64(enc.Len()) > n || n > int64(enc.Len())+4096 {
		t.Errorf("EncryptedSize = %d for %d bytes stored", n, enc.Len())
	}
	for _, id := range []string{a.String(), sshPriv} {
		ids, err := ParseIdentities(id)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Decrypt(bytes.NewReader(enc.Bytes()), ids)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("round trip: %d bytes, %v", len(got), err)
		}
	}

	ids, _ := ParseIdentities(a.String())
	if _, err := Decrypt(bytes.NewReader(enc.Bytes()), nil); !errors.Is(err, ErrIdentity) {
		t.Errorf("no identity: %v", err)
	}
	wrong, _ := ParseIdentities(other.String())
	if _, err := Decrypt(bytes.NewReader(enc.Bytes()), wrong); !errors.Is(err, ErrIdentity) || errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong identity: %v", err)
	}
	// One byte changed anywhere, or the end cut off: ErrCorrupt, from
	// the header or from reading.
	for _, at := range []int{10, enc.Len() / 2, enc.Len() - 1, -1} {
		b := bytes.Clone(enc.Bytes())
		if at < 0 {
			b = b[:len(b)-100]
		} else {
			b[at] ^= 1
		}
		r, err := Decrypt(bytes.NewReader(b), ids)
		if err == nil {
			_, err = io.ReadAll(r)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("damage at %d: %v, want ErrCorrupt", at, err)
		}
	}
	// The store's own failure stays the store's.
	boom := errors.New("connection reset")
	r, err := Decrypt(io.MultiReader(bytes.NewReader(enc.Bytes()[:enc.Len()/2]), errReader{boom}), ids)
	if err == nil {
		_, err = io.ReadAll(r)
	}
	if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Errorf("store failure: %v", err)
	}
}

// BenchmarkAge measures what encryption adds to a backup and a restore:
// age's ChaCha20-Poly1305 over 64 KiB chunks, one goroutine each way.
func BenchmarkAge(b *testing.B) {
	a, _ := age.GenerateX25519Identity()
	rs := Recipients{a.Recipient()}
	ids := Identities{a}
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	const total = 256 << 20
	var enc bytes.Buffer
	b.Run("encrypt", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			enc.Reset()
			w, _ := Encrypt(&enc, rs)
			for range total / len(buf) {
				w.Write(buf)
			}
			w.Close()
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			r, err := Decrypt(bytes.NewReader(enc.Bytes()), ids)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.CopyBuffer(io.Discard, r, buf); err != nil || n != total {
				b.Fatal(n, err)
			}
		}
	})
}

// Closing a decrypter part way stops its goroutine at once.
func TestDecryptCloseEarly(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	var enc bytes.Buffer
	w, _ := Encrypt(&enc, Recipients{a.Recipient()})
	w.Write(make([]byte, 20<<20))
	w.Close()
	r, err := Decrypt(bytes.NewReader(enc.Bytes()), Identities{a})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}
}

// countingAt counts the bytes read through it.
type countingAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

type failingAt struct{ err error }

func (f failingAt) ReadAt([]byte, int64) (int, error) { return 0, f.err }

func TestDecryptAt(t *testing.T) {
	a, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	plain := make([]byte, 10<<20)
	rand.Read(plain)
	var enc bytes.Buffer
	w, _ := Encrypt(&enc, Recipients{a.Recipient()})
	w.Write(plain)
	w.Close()
	src := &countingAt{r: bytes.NewReader(enc.Bytes())}
	ra, n, err := DecryptAt(src, int64(enc.Len()), Identities{a})
	if err != nil || n != int64(len(plain)) {
		t.Fatalf("DecryptAt = %d, %v", n, err)
	}
	opened := src.n.Load()
	got := make([]byte, 1000)
	off := int64(5<<20 + 12345)
	if _, err := ra.ReadAt(got, off); err != nil || !bytes.Equal(got, plain[off:off+1000]) {
		t.Fatalf("ReadAt: %v, or other bytes", err)
	}
	// The range lies in one 64 KiB chunk: one chunk fetched, not the file.
	if read := src.n.Load() - opened; read > 2*(64<<10+16) {
		t.Errorf("a 1000-byte read fetched %d bytes", read)
	}
	if opened > 64<<10+16+8192 {
		t.Errorf("opening fetched %d bytes", opened)
	}

	if _, _, err := DecryptAt(bytes.NewReader(enc.Bytes()), int64(enc.Len()), nil); !errors.Is(err, ErrIdentity) {
		t.Errorf("no identity: %v", err)
	}
	if _, _, err := DecryptAt(bytes.NewReader(enc.Bytes()), int64(enc.Len()), Identities{other}); !errors.Is(err, ErrIdentity) {
		t.Errorf("wrong identity: %v", err)
	}
	bad := bytes.Clone(enc.Bytes())
	bad[len(bad)/2] ^= 1
	ra, _, err = DecryptAt(bytes.NewReader(bad), int64(len(bad)), Identities{a})
	if err != nil {
		t.Fatal(err)
	}
	// The byte changed lies just before the plaintext's middle (the
	// header shifts the chunks): read across it.
	if _, err := ra.ReadAt(make([]byte, 128<<10), int64(len(plain)/2)-96<<10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("changed chunk: %v, want ErrCorrupt", err)
	}
	if _, err := ra.ReadAt(got, 0); err != nil {
		t.Errorf("an intact chunk of a damaged file: %v", err)
	}
	boom := errors.New("connection reset")
	if _, _, err := DecryptAt(failingAt{boom}, int64(enc.Len()), Identities{a}); !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
		t.Errorf("store failure: %v", err)
	}
}
