// Package storetest is the conformance suite every store.Store provider
// runs against its real server: the promises of the Store interface
// (round trips across part boundaries, never overwriting, nothing left
// behind by a failed or cancelled Put, prefixes, deletes of missing
// keys, a partial read then Close, the memory plan's part size and
// parallelism), checked the same way for every provider.
//
// # Adding a provider
//
// A provider is a package internal/store/<name> with the same files, in
// the same roles, as file, s3, azblob and gcs:
//
//   - config.go: Name (its SNAPSHOT_CLOUD_PROVIDER value), DetectVariable
//     (the setting that picks it when SNAPSHOT_CLOUD_PROVIDER is unset),
//     and Config, its settings with envconfig tags after its own prefix
//     (SNAPSHOT_<PREFIX>_...), with `func (c Config) Detected() bool` and
//     `func (c Config) Problems() []string` (every problem found, each
//     starting with the variable's full name; setting.NewProblems words
//     them). The job's config package assembles it: a field of config.Config
//     tagged with the prefix, and a line in Config.providers.
//   - <name>.go: `New(ctx context.Context, cfg Config, opts store.Options)
//     (*Store, error)` (no request yet; settings that cannot work wrap
//     setting.ErrInvalid), Check, String, and the HTTP client (a
//     stall.Dialer with opts.StallTimeout).
//   - put.go: Limits() store.PartLimits and Put, which sizes its parts
//     with Limits().Parts(opts, partSize, concurrency).
//   - get.go: Get (ranged.NewReader for stores that read in ranges).
//   - list.go: List, Delete and, where a killed upload can leave
//     something billed or visible, SweepIncomplete (the job's prune calls
//     it through its uploadSweeper interface).
//   - errors.go: `func (s *Store) classify(ctx context.Context, op, key
//     string, err error) error`, the one place that maps the provider's
//     failures to store.ErrAccess, ErrTransfer, ErrNotFound and ErrExists
//     (key "" for a request about the bucket itself), and errors that
//     implement store.RequestIdentifier when the store returns request
//     identifiers.
//
// The command builds it in cmd/snapshot-job/stores.go (newStore, and
// storeMemoryFor for the memory plan).
//
// # Running the suite
//
// The provider's tests start its real server on 127.0.0.1 with
// internal/testenv (testenv.StartVersity, testenv.StartAzurite,
// testenv.StartFakeGCS; add a starter there for a new server, installed
// by make tools) and call Run
// with a Harness:
//
//	func TestConformance(t *testing.T) {
//		v := testenv.StartVersity(t)
//		v.CreateBucket(t, "snaps")
//		storetest.Run(t, storetest.Harness{
//			New: func(t *testing.T) store.Store {
//				s, err := s3.New(t.Context(), s3.Config{...}, store.Options{PartSize: 5 << 20})
//				if err != nil {
//					t.Fatal(err)
//				}
//				return s
//			},
//			PartSize: 5 << 20,
//			Leftovers: func(t *testing.T, _ store.Store, prefix string) []string {
//				return v.MultipartUploads(t, "snaps", prefix)
//			},
//		})
//	}
//
// Harness.New returns a store ready for use (tests keep to their own key
// prefixes, so it may hand out the same bucket every time); PartSize is
// the part size New configured, so that objects cross part boundaries;
// Leftovers lists, through the server's own API and not the provider's
// code, what a failed Put may leave that List does not show (open
// multipart uploads, uncommitted blocks, temporary files), or is nil when
// there is no such thing. Show that Leftovers can fail, as azblob's and
// gcs's LeftoversDetectable do: a suite that cannot fail checks nothing.
//
// Faults the real server cannot be made to produce (a 500 on the third
// part, a lost answer, a stalled connection) come from
// testenv.StartFaultProxy in front of it, in the provider's own tests.
package storetest
