package backup

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"github.com/qvm-dev/qvm/core"
	"hash"
	"strings"
)

// hmacHash maps a v3 header's hmac-algorithm (an openssl digest name) to
// the hash; nil when we do not know it.
func hmacHash(name string) func() hash.Hash {
	switch strings.ToLower(strings.TrimPrefix(strings.ToLower(name), "-")) {
	case "sha512":
		return sha512.New
	case "sha384":
		return sha512.New384
	case "sha256":
		return sha256.New
	case "sha224":
		return sha256.New224
	case "sha1":
		return sha1.New
	case "md5":
		return md5.New
	}
	return nil
}

type v3State struct{}

func (a *Archive) openV3(ctx context.Context) error {
	return formatErr("format 3 backups are not supported yet")
}

func (a *Archive) extractV3(ctx context.Context, want func(string) bool, open OpenFunc) error {
	return formatErr("format 3 backups are not supported yet")
}

// V3App converts a format 3 qubes.xml (R3 QubesVmCollection) into a
// model the restore can use.
func (a *Archive) V3App(stateDir string, host core.Host) (*core.App, error) {
	return nil, formatErr("format 3 backups are not supported yet")
}
