package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/setting"
	"github.com/snapshot-job/snapshot-job/internal/store"
	"github.com/snapshot-job/snapshot-job/internal/store/azblob"
	"github.com/snapshot-job/snapshot-job/internal/store/file"
	"github.com/snapshot-job/snapshot-job/internal/store/gcs"
	"github.com/snapshot-job/snapshot-job/internal/store/s3"
)

// newStore builds the provider SNAPSHOT_CLOUD_PROVIDER names.
func newStore(ctx context.Context, cfg config.Config, log *slog.Logger, version string) (store.Store, error) {
	opts := store.Options{
		PartSize:     int64(cfg.PartSize),
		Concurrency:  cfg.UploadConcurrency,
		Logger:       log,
		Version:      version,
		StallTimeout: time.Duration(cfg.IOTimeout),
	}
	switch cfg.Provider {
	case file.Name:
		return built(file.New(ctx, cfg.File, opts))
	case s3.Name:
		return built(s3.New(ctx, cfg.S3, opts))
	case azblob.Name:
		s, err := azblob.New(ctx, cfg.Azure, opts)
		if err != nil {
			return nil, err
		}
		log.Info("azure blob storage", "store", s.String(), "credentials", s.CredentialMethod())
		return s, nil
	case gcs.Name:
		c := cfg.GCS
		c.CheckPrefix = cfg.Prefix
		s, err := gcs.New(ctx, c, opts)
		if err != nil {
			return nil, err
		}
		attrs := []any{"store", s.String(), "credentials", s.CredentialMethod()}
		if id := s.Identity(); id != "" {
			attrs = append(attrs, "service_account", id)
		}
		log.Info("google cloud storage", attrs...)
		return s, nil
	}
	return nil, fmt.Errorf("%w: SNAPSHOT_CLOUD_PROVIDER=%s is not built into this binary", setting.ErrInvalid, cfg.Provider)
}

// built returns what a provider's New returned as a store.Store, and no
// typed nil for an error.
func built[S store.Store](s S, err error) (store.Store, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// storeMemory is what a provider holds in memory for one transfer, for
// the memory plan.
type storeMemory struct {
	// limits are the provider's part limits: its Put raises the part size
	// with the same rule (store.PartLimits.Parts, store.PartSize) the plan
	// uses.
	limits store.PartLimits
	// buffered: parts and ranges are held in memory (S3, Azure, GCS); the file
	// store streams.
	buffered bool
	// putExtra and getExtra are the part buffers held besides those in
	// flight: the one being filled, and S3's uploader keeps one more in
	// its pool; the one being read by the restore.
	putExtra, getExtra int
}

func storeMemoryFor(provider string) storeMemory {
	switch provider {
	case s3.Name:
		return storeMemory{limits: s3.Limits(), buffered: true, putExtra: 2, getExtra: 1}
	case azblob.Name:
		return storeMemory{limits: azblob.Limits(), buffered: true, putExtra: 1, getExtra: 1}
	case gcs.Name:
		// Composite uploads hold the parts in flight and the one being
		// filled, as Azure does. A single resumable stream (one part in
		// flight) holds only the client's chunk buffer, one part: less
		// than planned.
		return storeMemory{limits: gcs.Limits(), buffered: true, putExtra: 1, getExtra: 1}
	}
	return storeMemory{limits: file.Limits()}
}
