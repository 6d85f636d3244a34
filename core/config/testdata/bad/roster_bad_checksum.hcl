roles = []

plugin "lamp" {
  checksum = "md5:d41d8cd98f00b204e9800998ecf8427e"
}

plugin "web" {
  checksum = "sha256:abc"
}

plugin "web" {
  checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
}

plugin "db" {}
