package changelog

// DecodeRecord is decodeRecord, for the external tests that read the log.
var DecodeRecord = decodeRecord

// StartNATS is startNATS, for the external tests.
var StartNATS = startNATS
