package localfs_test

import (
	"testing"

	"github.com/vigilhq/vigil/adapters/localfs"
	"github.com/vigilhq/vigil/compliance/blobtest"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobtest.Store {
		s, err := localfs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
