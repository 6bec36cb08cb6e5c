package state

import (
	"log/slog"
	"path/filepath"

	"github.com/epair-cni/epair/pkg/atomicfile"
)

// removeTemps removes the temporary state files a daemon killed inside Save
// left behind (atomicfile's .state.json.tmp-N): they are never read again,
// and a node whose daemon crashes in a loop would gather them without end.
// It runs under the lock, when no Save of another daemon can be under way.
// Failing to remove them is logged only: they do no harm beyond the space.
func removeTemps(dir string) {
	removed, err := atomicfile.RemoveTemps(filepath.Join(dir, fileName))
	if len(removed) > 0 {
		slog.Info("removed temporary state files a crash left behind", "dir", dir, "files", removed)
	}
	if err != nil {
		slog.Warn("cannot remove temporary state files", "dir", dir, "err", err)
	}
}
