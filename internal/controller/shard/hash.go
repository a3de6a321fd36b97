package shard

import "hash/fnv"

// Owner is the member that should serve key (an object's namespace/name):
// the member with the highest weight hash(member, key), or "" with no
// members. Every replica computes the same owner from the same members,
// and a member joining or leaving moves only the keys it wins or held.
func Owner(key string, members []string) string {
	best, bestW := "", uint64(0)
	for _, m := range members {
		if w := weight(m, key); best == "" || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

// weight hashes member and key together (FNV-1a, then splitmix64's
// finalizer so that similar names spread evenly).
func weight(member, key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
