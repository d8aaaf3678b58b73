package twin

import (
	"encoding/binary"
	"slices"
	"unsafe"
)

// ReadingsBuilder packs readings set one at a time, in any order, into
// Readings with one allocation: Readings.Set makes a new string per call
// (a sample with two readings made one to throw away, one with MaxValues
// made 64), where the builder inserts into its own buffer, which lives
// where the builder does (a decoder's stack) and holds 256 B of entries,
// about a dozen readings; more go to the heap, growing as append grows.
// The zero value is empty and ready. Not for concurrent use; not to be
// copied once used.
type ReadingsBuilder struct {
	n   int       // bytes of entries in buf, when big is nil
	buf [256]byte //
	big []byte    // the entries, once they outgrew buf
}

// Reset empties rb and starts it from r's readings.
func (rb *ReadingsBuilder) Reset(r Readings) {
	rb.n, rb.big = 0, nil
	if len(r.s) <= len(rb.buf) {
		rb.n = copy(rb.buf[:], r.s)
	} else {
		rb.big = []byte(r.s)
	}
}

// entries is rb's entries.
func (rb *ReadingsBuilder) entries() []byte {
	if rb.big != nil {
		return rb.big
	}
	return rb.buf[:rb.n]
}

// view is rb's entries as Readings without a copy, for reading them
// before the next Set; never kept.
func (rb *ReadingsBuilder) view() Readings {
	e := rb.entries()
	return Readings{s: unsafe.String(unsafe.SliceData(e), len(e))}
}

// Len is how many readings rb holds.
func (rb *ReadingsBuilder) Len() int { return rb.view().Len() }

// Get is the reading named key.
func (rb *ReadingsBuilder) Get(key string) (float64, bool) { return rb.view().Get(key) }

// Set sets the reading named key to v, inserting it in name order or
// replacing its value (the last of a name set wins), in place.
func (rb *ReadingsBuilder) Set(key string, v float64) {
	var vb [binary.MaxVarintLen64 + 1]byte
	val := appendF64(vb[:0], v)
	e := rb.entries()
	i, w, l := 0, 0, 0 // the entry at i is the first whose name is >= key; w and l its name's and value's lengths when it is key
	for i < len(e) {
		k, kw := propStr(unsafe.String(&e[i], len(e)-i))
		vl := valueLen(unsafe.String(&e[i+kw], len(e)-i-kw))
		if k == key {
			w, l = kw, vl
			break
		}
		if k > key {
			break
		}
		i += kw + vl
	}
	if l > 0 { // replace the value
		i += w
		switch {
		case rb.big != nil:
			rb.big = slices.Replace(rb.big, i, i+l, val...)
		case rb.n-l+len(val) <= len(rb.buf):
			copy(rb.buf[i+len(val):], rb.buf[i+l:rb.n])
			copy(rb.buf[i:], val)
			rb.n += len(val) - l
		default:
			rb.spill(i, i+l, val)
		}
		return
	}
	var eb [96]byte
	ent := append(append(binary.AppendUvarint(eb[:0], uint64(len(key))), key...), val...)
	switch {
	case rb.big != nil:
		rb.big = slices.Insert(rb.big, i, ent...)
	case rb.n+len(ent) <= len(rb.buf):
		copy(rb.buf[i+len(ent):], rb.buf[i:rb.n])
		copy(rb.buf[i:], ent)
		rb.n += len(ent)
	default:
		rb.spill(i, i, ent)
	}
}

// spill moves the entries out of buf to the heap, with buf[lo:hi]
// replaced by ent. (A new slice, never one of buf's: the builder stays
// where its owner put it.)
func (rb *ReadingsBuilder) spill(lo, hi int, ent []byte) {
	nb := make([]byte, 0, 2*(rb.n-(hi-lo)+len(ent)))
	nb = append(append(append(nb, rb.buf[:lo]...), ent...), rb.buf[hi:rb.n]...)
	rb.big = nb
}

// Readings is rb's readings, copied into one new string (none when rb
// holds none). rb is unchanged.
func (rb *ReadingsBuilder) Readings() Readings {
	e := rb.entries()
	if len(e) == 0 {
		return Readings{}
	}
	return Readings{s: string(e)}
}
