package snapname

import (
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 15, 0, 999, time.FixedZone("CET", 3600))
	if got, want := Key("snapshots/", "kubeshark", at), "snapshots/kubeshark-20261126T021500Z.tar.zst"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	if got, want := Key("", "s", at), "s-20261126T021500Z.tar.zst"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}

func TestEncryptedKey(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	k := EncryptedKey("snapshots/", "kubeshark", at)
	if k != "snapshots/kubeshark-20261126T031500Z.tar.zst.age" {
		t.Errorf("EncryptedKey = %q", k)
	}
	if !Encrypted(k) || Encrypted(Key("snapshots/", "kubeshark", at)) {
		t.Errorf("Encrypted is wrong")
	}
	if got, ok := Parse("snapshots/", "kubeshark", k); !ok || !got.Equal(at) {
		t.Errorf("Parse(%q) = %s, %v", k, got, ok)
	}
}

func TestParse(t *testing.T) {
	want := time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC)
	for key, ok := range map[string]bool{
		"snapshots/kubeshark-20261126T031500Z.tar.zst":         true,
		"snapshots/kubeshark-20261126T031500Z.tar.zst.age":     true,
		"snapshots/kubeshark-20261126T031500Z.tar.zst.age.age": false,
		"snapshots/kubeshark-20261126T031500Z.tar.age":         false,
		"snapshots/kubeshark-20261126T031500Z.age":             false,
		"snapshots/kubeshark-20261126T031500Z.tar.zst.agex":    false,
		"snapshots/kubeshark-20261126T031500Z.tar.zst.bak":     false,
		"snapshots/kubeshark-20261126T031500Z.tar":             false,
		"snapshots/sub/kubeshark-20261126T031500Z.tar.zst":     false,
		"snapshots2/kubeshark-20261126T031500Z.tar.zst":        false,
		"snapshots/kubeshark-2-20261126T031500Z.tar.zst":       false,
		"snapshots/kubeshark-latest.tar.zst":                   false,
		"snapshots/kubeshark-20261126T031500.tar.zst":          false,
		"snapshots/kubeshark-20261326T031500Z.tar.zst":         false,
		"snapshots/kubeshark-20261126t031500z.tar.zst":         false,
		"snapshots/kubeshark-20261126T031500Z.tar.zst/":        false,
		"snapshots/kubeshark-x20261126T031500Z.tar.zst":        false,
		"other/snapshots/kubeshark-20261126T031500Z.tar.zst":   false,
	} {
		got, matched := Parse("snapshots/", "kubeshark", key)
		if matched != ok {
			t.Errorf("Parse(%q) matched = %v, want %v", key, matched, ok)
		}
		if ok && !got.Equal(want) {
			t.Errorf("Parse(%q) = %s, want %s", key, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("snapshots/", "kubeshark", "snapshots/kubeshark-20261126T031500Z.tar.zst")
	f.Add("", "s", "s-20000101T000000Z.tar.zst")
	f.Fuzz(func(t *testing.T, prefix, name, key string) {
		ts, ok := Parse(prefix, name, key)
		if !ok {
			return
		}
		// Whatever matches must be exactly what Key would write.
		if Key(prefix, name, ts) != key {
			t.Fatalf("Parse(%q, %q, %q) matched, but Key gives %q", prefix, name, key, Key(prefix, name, ts))
		}
	})
}
