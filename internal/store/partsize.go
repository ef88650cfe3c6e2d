package store

// PartLimits are a provider's bounds on the parts of one object. Zero
// fields mean no bound.
type PartLimits struct {
	MaxParts    int64
	MinPartSize int64
	MaxPartSize int64
}

// PartSize applies PartSize with these limits.
func (l PartLimits) PartSize(estimate, configured int64) int64 {
	return PartSize(estimate, l.MaxParts, l.MinPartSize, l.MaxPartSize, configured)
}

// Parts returns the part size and the parts in flight of one Put: the
// plan's in opts where it set them, else the store's own (partSize,
// concurrency), the size then raised for opts.SizeHint by PartSize.
func (l PartLimits) Parts(opts PutOptions, partSize int64, concurrency int) (int64, int) {
	if opts.PartSize > 0 {
		partSize = opts.PartSize
	}
	if opts.Concurrency > 0 {
		concurrency = opts.Concurrency
	}
	return l.PartSize(opts.SizeHint, partSize), concurrency
}

// PartSize is the one rule for the part size of an upload of about
// estimate bytes (<= 0: unknown): configured, raised so that estimate plus
// a 10 % margin (files that grow during the backup, framing beyond the
// estimate) fits in partLimit parts, rounded up to a whole MiB and
// kept within [minPart, maxPart]. A zero partLimit or maxPart is no bound.
// Providers' Put and the command's memory plan both call it, so that the
// memory planned is the memory used.
func PartSize(estimate, partLimit, minPart, maxPart, configured int64) int64 {
	size := configured
	if estimate > 0 && partLimit > 0 {
		need := estimate + estimate/10
		size = max(size, (need+partLimit-1)/partLimit)
	}
	const mib = 1 << 20
	size = (size + mib - 1) / mib * mib
	size = max(size, minPart)
	if maxPart > 0 {
		size = min(size, maxPart)
	}
	return size
}
