package twin

import "encoding/binary"

// packedReadings is the readings (props "values") of a packed props p as
// their encoded tagMap entries (key, value)..., keys sorted, and their
// count: ok when p is packed and its "values" is absent or a map. Then
// ApplySample merges a sample's readings into those bytes (mergeReadings)
// instead of decoding them into a map[string]any, boxing every number and
// encoding the map again: at 20k samples/s that was about a third of the
// apply's allocations (alloc_space profile of a wsload run).
func packedReadings(p Props) (entries string, n int, ok bool) {
	if !p.packed() {
		return "", 0, false
	}
	raw, has := p.raw("values")
	if !has {
		return "", 0, true
	}
	if raw[0] != tagMap {
		return "", 0, false
	}
	body, w := propUvarint(raw[1:])
	c := raw[1+w : 1+w+int(body)]
	cnt, k := propUvarint(c)
	return c[k:], int(cnt), true
}

// nextEntry splits the first (key, value) entry off a tagMap's entries.
func nextEntry(entries string) (key, val, rest string) {
	key, n := propStr(entries)
	m := valueLen(entries[n:])
	return key, entries[n : n+m], entries[n+m:]
}

// readingsAdded is how many of r's names entries (a packed map's, sorted)
// lacks: both sorted, one walk over each.
func readingsAdded(entries string, r Readings) int {
	added := 0
	for e := r.s; e != ""; {
		k, l := nextReading(e)
		e = e[l:]
		for {
			if entries == "" {
				added++
				break
			}
			ek, _, rest := nextEntry(entries)
			if ek == k {
				break
			}
			if ek > k {
				added++
				break
			}
			entries = rest
		}
	}
	return added
}

// appendMergedReadings appends the packed tagMap value of entries (a
// packed map's, count n) with r's readings set over them, added of them
// new: the bytes appendValueBytes writes for the map[string]any of the old
// readings decoded with r's set over them, as an old value's bytes are
// what its decoded value encodes to. r's entries are the map's entry
// bytes (see Readings), so both sides are copied, neither decoded.
func appendMergedReadings(b []byte, entries string, n int, r Readings, added int) []byte {
	var sb [256]byte
	body := binary.AppendUvarint(sb[:0], uint64(n+added))
	for e := r.s; e != ""; {
		k, l := nextReading(e)
		for entries != "" {
			ek, _, rest := nextEntry(entries)
			if ek > k {
				break
			}
			if ek < k {
				body = append(body, entries[:len(entries)-len(rest)]...)
			}
			entries = rest // or replaced by the sample's reading
			if ek == k {
				break
			}
		}
		body = append(body, e[:l]...)
		e = e[l:]
	}
	body = append(body, entries...)
	b = append(b, tagMap)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}
