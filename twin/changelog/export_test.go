package changelog

// DecodeRecord is decodeRecord, for the external tests that read the log.
var DecodeRecord = decodeRecord
