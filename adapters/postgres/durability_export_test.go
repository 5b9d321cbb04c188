package postgres

// ArchivedEnd is archivedEnd, for the tests.
var ArchivedEnd = archivedEnd
