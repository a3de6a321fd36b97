package procnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// lookPath finds a command on the container's PATH (not the node's).
func lookPath(name, pathEnv string) (string, error) {
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH %q", name, pathEnv)
}
