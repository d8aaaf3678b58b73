package timeline

// SetMaxCachedState sets the largest checkpoint state r keeps between
// builds (0: read back from the store every time).
func (r *Recorder) SetMaxCachedState(n int) { r.maxCached = n }
