package main

// targets are the goals the issues set, keyed by benchmark name without the
// Benchmark prefix; a benchmark without one shows an empty cell.
var targets = map[string]string{}
