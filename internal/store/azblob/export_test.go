package azblob

import (
	"context"
	"strings"
)

// Metadata returns a blob's metadata with the keys PutOptions used.
func (s *Store) Metadata(ctx context.Context, key string) (map[string]string, error) {
	p, err := s.client.NewBlobClient(key).GetProperties(s.control(ctx), nil)
	if err != nil {
		return nil, s.classify(ctx, "reading", key, err)
	}
	return metadataFromAzure(p.Metadata), nil
}

// metadataFromAzure undoes metadataToAzure. Go's header handling
// capitalises the first letter of each key, so keys are lower-cased.
func metadataFromAzure(in map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if v == nil {
			continue
		}
		out[strings.ReplaceAll(strings.ToLower(k), "_", "-")] = *v
	}
	return out
}
