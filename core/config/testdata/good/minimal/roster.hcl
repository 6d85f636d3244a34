# Every setting at its default.
