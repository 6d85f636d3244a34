# roster.hcl: the lamp example. `roster up` in this directory runs it all on
# this host: the db role's PostgreSQL, a pool of web servers (apache with
# mod_php, and a memcached each) that grows and shrinks with their busy
# workers, one spare machine kept warm, and a haproxy in front of the pool on
# 127.0.0.1:8080. See README.md.

cluster  = "lamp"
data_dir = ".roster"
spares   = 1 # a warm machine takes the next web server in seconds
roles    = ["roles/*.hcl"]

queue "local" {}
provider "local" {}

# The managed haproxy: roster runs it and adds every ready web server to its
# backend, drains a leaving one there before halting it.
balancer "haproxy" "front" {
  frontend       = "127.0.0.1:8080"
  role           = "web"
  balance        = "leastconn"
  check_path     = "/health.php"
  check_interval = "2s"
  # = the web role's max_request_workers: haproxy queues the excess itself
  # and hands it to the first server with a free worker.
  server_maxconn = 8
}

logs {
  destination = "file://.roster/logs"
}

api {
  address = "127.0.0.1:7070"
}
