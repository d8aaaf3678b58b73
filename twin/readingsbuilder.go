package twin

import (
	"encoding/binary"
	"math"
	"slices"
	"unsafe"
)

// ReadingsBuilder packs readings set one at a time, in any order, into
// Readings with one allocation: Readings.Set makes a new string per call
// (a sample with two readings made one to throw away, one with MaxValues
// made 64), where the builder inserts into its own buffer, which lives
// where the builder does (a decoder's stack) and holds 256 B of entries,
// about a dozen readings; more go to the heap, growing as append grows.
// It keeps the offsets of its first MaxValues entries, so Set finds a
// name by binary search: a linear one over 64 entries per reading made a
// message of 64 readings slower to decode than with a map.
// The zero value is empty and ready. Not for concurrent use; not to be
// copied once used.
type ReadingsBuilder struct {
	n     int               // bytes of entries in buf, when big is nil
	cnt   int               // readings held
	noIdx bool              // off is not kept (more than MaxValues readings, or 64 KiB)
	off   [MaxValues]uint16 // off[:cnt]: each entry's offset, unless noIdx
	buf   [256]byte         //
	big   []byte            // the entries, once they outgrew buf
}

// Reset empties rb and starts it from r's readings.
func (rb *ReadingsBuilder) Reset(r Readings) {
	rb.n, rb.big, rb.cnt, rb.noIdx = 0, nil, 0, len(r.s) > math.MaxUint16
	for e := r.s; e != ""; rb.cnt++ {
		_, l := nextReading(e)
		if rb.cnt >= len(rb.off) {
			rb.noIdx = true
		} else if !rb.noIdx {
			rb.off[rb.cnt] = uint16(len(r.s) - len(e))
		}
		e = e[l:]
	}
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
func (rb *ReadingsBuilder) Len() int { return rb.cnt }

// Get is the reading named key.
func (rb *ReadingsBuilder) Get(key string) (float64, bool) {
	_, at, found := rb.find(key)
	if !found {
		return 0, false
	}
	e := rb.view().s[at:]
	_, w := propStr(e)
	v, _ := readingValue(e[w:])
	return v, true
}

// find is the index and offset of the first entry whose name is >= key,
// and whether it is key.
func (rb *ReadingsBuilder) find(key string) (j, at int, found bool) {
	e := rb.view().s
	if !rb.noIdx {
		j, found = slices.BinarySearchFunc(rb.off[:rb.cnt], key, func(o uint16, key string) int {
			k, _ := propStr(e[o:])
			switch {
			case k < key:
				return -1
			case k > key:
				return 1
			}
			return 0
		})
		if j == rb.cnt {
			return j, len(e), false
		}
		return j, int(rb.off[j]), found
	}
	for at < len(e) {
		k, l := nextReading(e[at:])
		if k >= key {
			return j, at, k == key
		}
		at += l
		j++
	}
	return j, at, false
}

// Set sets the reading named key to v, inserting it in name order or
// replacing its value (the last of a name set wins), in place.
func (rb *ReadingsBuilder) Set(key string, v float64) {
	var vb [binary.MaxVarintLen64 + 1]byte
	val := appendF64(vb[:0], v)
	j, at, found := rb.find(key)
	var lo, hi int // the bytes replaced, by ent
	var ent []byte
	var eb [96]byte
	if found {
		e := rb.view().s[at:]
		_, w := propStr(e)
		lo, hi, ent = at+w, at+w+valueLen(e[w:]), val
	} else {
		lo, hi = at, at
		ent = append(append(binary.AppendUvarint(eb[:0], uint64(len(key))), key...), val...)
	}
	d := len(ent) - (hi - lo)
	switch {
	case rb.big != nil:
		rb.big = slices.Replace(rb.big, lo, hi, ent...)
	case rb.n+d <= len(rb.buf):
		copy(rb.buf[hi+d:], rb.buf[hi:rb.n])
		copy(rb.buf[lo:], ent)
		rb.n += d
	default:
		rb.spill(lo, hi, ent)
	}
	if !found {
		rb.cnt++
	}
	if rb.noIdx {
		return
	}
	if rb.cnt > len(rb.off) || len(rb.entries()) > math.MaxUint16 {
		rb.noIdx = true
		return
	}
	if !found {
		copy(rb.off[j+1:rb.cnt], rb.off[j:rb.cnt-1])
		rb.off[j] = uint16(at)
		j++
	} else {
		j++ // the entries after the replaced value's
	}
	for i := j; i < rb.cnt; i++ {
		rb.off[i] = uint16(int(rb.off[i]) + d)
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
