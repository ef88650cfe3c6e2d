package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/snapshot-job/snapshot-job/internal/config"
	"github.com/snapshot-job/snapshot-job/internal/upload"
	"github.com/snapshot-job/snapshot-job/internal/upload/azblob"
	"github.com/snapshot-job/snapshot-job/internal/upload/file"
	"github.com/snapshot-job/snapshot-job/internal/upload/s3"
)

// newStore builds the provider SNAPSHOT_CLOUD_PROVIDER names.
func newStore(ctx context.Context, cfg config.Config, log *slog.Logger, version string) (upload.Store, error) {
	switch cfg.Provider {
	case "file":
		return file.New(cfg.File.Dir), nil
	case "s3":
		s, err := s3.New(ctx, cfg.S3, s3.Options{
			PartSize:     int64(cfg.PartSize),
			Concurrency:  cfg.UploadConcurrency,
			Logger:       log,
			Version:      version,
			StallTimeout: time.Duration(cfg.IOTimeout),
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case "azblob":
		s, err := azblob.New(ctx, cfg.Azure, azblob.Options{
			PartSize:     int64(cfg.PartSize),
			Concurrency:  cfg.UploadConcurrency,
			Logger:       log,
			Version:      version,
			StallTimeout: time.Duration(cfg.IOTimeout),
		})
		if err != nil {
			return nil, err
		}
		log.Info("azure blob storage", "store", s.String(), "credentials", s.CredentialMethod())
		return s, nil
	}
	return nil, fmt.Errorf("%w: SNAPSHOT_CLOUD_PROVIDER=%s is not built into this binary", config.ErrInvalid, cfg.Provider)
}
