package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapshot-job/snapshot-job/internal/testenv"
)

func checkAll(v *validator, hs ...tar.Header) error {
	for i := range hs {
		if _, err := v.check(&hs[i]); err != nil {
			return err
		}
	}
	return nil
}

func reg(name string) tar.Header  { return tar.Header{Typeflag: tar.TypeReg, Name: name} }
func dirH(name string) tar.Header { return tar.Header{Typeflag: tar.TypeDir, Name: name} }

// The work of the path checks is linear in the bytes of the names: the
// old checks walked every parent with path.Dir (quadratic in depth) and
// kept every name.
func TestValidatorWorkIsLinear(t *testing.T) {
	for _, tc := range []struct {
		name         string
		files, depth int
		sameDir      bool
	}{
		{"1000 files 240 deep, one chain", 1000, 240, true},
		{"200 files 240 deep, own chains", 200, 240, false},
		{"deep 6000", 3, 6000, false},
		{"flat", 20000, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newValidator(limits{})
			var bytes, comps int64
			add := func(h tar.Header) {
				bytes += int64(len(h.Name))
				comps += int64(strings.Count(h.Name, "/") + 1)
				if _, err := v.check(&h); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.files {
				dir := "d"
				if !tc.sameDir {
					dir = fmt.Sprintf("x%d", i)
				}
				add(reg(dir + strings.Repeat("/component", tc.depth) + fmt.Sprintf("/f%d", i)))
			}
			// Every byte is hashed once; every component costs at most a
			// few probes (a lookup and an insert, each a short run of slots).
			if v.hashed > bytes {
				t.Errorf("hashed %d bytes for %d bytes of names", v.hashed, bytes)
			}
			if v.probes > 8*comps+8*int64(tc.files) {
				t.Errorf("%d probes for %d components", v.probes, comps)
			}
			t.Logf("%d bytes, %d components: hashed %d, probes %d", bytes, comps, v.hashed, v.probes)
		})
	}
}

func TestValidatorRules(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		want    error
		words   string
	}{
		{"component over NAME_MAX", []tar.Header{reg("a/" + long)}, ErrCorrupt, "NAME_MAX"},
		{"component of 255", []tar.Header{reg("a/" + long[:255])}, nil, ""},
		{"name over MaxNameLength", []tar.Header{reg(strings.Repeat("a/", MaxNameLength/2) + "f")}, ErrCorrupt, "MaxNameLength"},
		{"symlink target over PATH_MAX", []tar.Header{{Typeflag: tar.TypeSymlink, Name: "l", Linkname: strings.Repeat("t", 4096)}}, ErrCorrupt, "PATH_MAX"},
		{"symlink target of 4095", []tar.Header{{Typeflag: tar.TypeSymlink, Name: "l", Linkname: strings.Repeat("t", 4095)}}, nil, ""},
		{"negative uid", []tar.Header{{Typeflag: tar.TypeReg, Name: "f", Uid: -2}}, ErrCorrupt, "owner"},
		{"uid too large", []tar.Header{{Typeflag: tar.TypeReg, Name: "f", Gid: 1 << 32}}, ErrCorrupt, "owner"},
		{"file where a directory was implied", []tar.Header{reg("a/b"), reg("a")}, ErrUnsafe, "earlier entries are below it"},
		{"directory named after its contents", []tar.Header{reg("a/b"), dirH("a/")}, nil, ""},
		{"below a symlink, deep", []tar.Header{dirH("a/"), dirH("a/b/"), {Typeflag: tar.TypeSymlink, Name: "a/b/c", Linkname: "/"}, reg("a/b/c/d/e/f")}, ErrUnsafe, `symlink "a/b/c"`},
		{"below a file, deep", []tar.Header{reg("a/b/c"), reg("a/b/c/d/e")}, ErrUnsafe, `file "a/b/c"`},
		{"duplicate after cleaning", []tar.Header{reg("a/b"), reg("a//./b")}, ErrUnsafe, "appears twice"},
		{"hard link to a directory", []tar.Header{dirH("d/"), {Typeflag: tar.TypeLink, Name: "h", Linkname: "d"}}, ErrUnsafe, "not a file"},
		{"hard link to the root", []tar.Header{{Typeflag: tar.TypeLink, Name: "h", Linkname: "./"}}, ErrUnsafe, "target directory itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAll(newValidator(limits{}), tc.entries...)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.want, tc.words)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("message of %d bytes", len(err.Error()))
			}
		})
	}
}

func TestValidatorCaps(t *testing.T) {
	t.Run("names", func(t *testing.T) {
		v := newValidator(limits{maxNames: 1000, maxImplied: 1000, maxDirBytes: 1 << 20})
		var err error
		for i := 0; err == nil && i < 2000; i++ {
			_, err = v.check(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%d/f", i)})
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "more than 1000 paths (MaxNames") {
			t.Fatalf("err = %v", err)
		}
		if v.names.n > 1000 {
			t.Errorf("%d names kept", v.names.n)
		}
	})
	t.Run("implied directories", func(t *testing.T) {
		v := newValidator(limits{maxNames: 1 << 20, maxImplied: 100, maxDirBytes: 1 << 20})
		err := checkAll(v, reg(strings.Repeat("a/", 60)+"f"), reg(strings.Repeat("b/", 60)+"f"))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "more than 100 directories") {
			t.Fatalf("err = %v", err)
		}
		// Directories listed after their contents (find -depth) stop
		// counting once listed.
		v = newValidator(limits{maxNames: 1 << 20, maxImplied: 100, maxDirBytes: 1 << 20})
		for i := range 50 {
			d := fmt.Sprintf("d%d", i)
			if err := checkAll(v, reg(d+"/x/y/f"), dirH(d+"/x/y/"), dirH(d+"/x/"), dirH(d+"/")); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("directory metadata", func(t *testing.T) {
		v := newValidator(limits{maxNames: 1 << 22, maxImplied: 100, maxDirBytes: 10 << 20})
		var err error
		for i := 0; err == nil && i < 1<<20; i++ {
			_, err = v.check(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%0200d/", i)})
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "MaxDirMetadata") {
			t.Fatalf("err = %v", err)
		}
	})
}

// Whatever a restore refuses for its names and types, Verify refuses,
// with the same message.
func TestVerifyRefusesWhatRestoreRefuses(t *testing.T) {
	for name, data := range map[string][]byte{
		"300-byte component":  testenv.TarZst(t, testenv.File("ok", "x"), testenv.File("dir/"+strings.Repeat("c", 300), "x")),
		"long symlink":        testenv.TarZst(t, testenv.Symlink("l", strings.Repeat("t", 5000))),
		"implied directories": testenv.ImpliedDirs(t, 3, 300),
	} {
		t.Run(name, func(t *testing.T) {
			lim := limits{maxNames: 1 << 20, maxImplied: 500, maxDirBytes: 1 << 20}
			_, verr := verify(t.Context(), bytes.NewReader(data), VerifyOptions{}, lim)
			parent := t.TempDir()
			_, xerr := Extract(t.Context(), bytes.NewReader(data), filepath.Join(parent, "r"), ExtractOptions{Token: "t1", limits: lim})
			if verr == nil || xerr == nil || !errors.Is(verr, ErrCorrupt) || verr.Error() != xerr.Error() {
				t.Fatalf("verify: %v\nextract: %v", verr, xerr)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Errorf("restore left %v", entries)
			}
		})
	}
}

// Sparse entries claim sizes the stream does not hold: a 10 KB object
// could keep a reader busy for years reading holes.
func TestSparseEntriesBounded(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatal("GNU tar is missing: apt-get install tar")
	}
	dir := t.TempDir()
	for n, size := range map[string]int64{"a": 1100 << 30, "c": 4 << 30} {
		f, err := os.Create(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Skipf("no sparse files here: %v", err)
		}
		f.WriteAt([]byte("end"), size)
		f.Close()
	}
	for _, format := range []string{"gnu", "posix"} {
		out, err := exec.Command("tar", "--sparse", "--format="+format, "-cf", "-", "-C", dir, "a", "c").Output()
		if err != nil {
			t.Fatal(err)
		}
		_, err = Verify(t.Context(), bytes.NewReader(testenv.Zst(t, out)), VerifyOptions{})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "MaxSparseSize") {
			t.Errorf("%s: err = %v", format, err)
		}
	}
	out, err := exec.Command("tar", "--sparse", "-cf", "-", "-C", dir, "c").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(t.Context(), bytes.NewReader(testenv.Zst(t, out)), VerifyOptions{}); err != nil {
		t.Errorf("a 4 GiB sparse file: %v", err)
	}
}
