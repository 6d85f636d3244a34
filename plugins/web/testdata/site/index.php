<?php
// The web role tests' page: counts visits in this server's memcached, which
// the role names in $_SERVER['ROSTER_MEMCACHED'] (host:port). Adds and
// increments only, so that memcached's hit ratio counts the tests' own
// lookups.
header('Content-Type: text/plain; charset=utf-8');
[$host, $port] = array_pad(explode(':', $_SERVER['ROSTER_MEMCACHED'] ?? '', 2), 2, '0');
$mc = new Memcached();
$mc->addServer($host, (int) $port);
// increment fails on a missing key; add it first (add is atomic, so two
// first visits do not both start at 1).
$mc->add('visits', 0);
$visits = $mc->increment('visits');
if ($visits === false) {
    http_response_code(503);
    echo 'memcached: ', $mc->getResultMessage(), "\n";
    exit;
}
echo 'server: ', $_SERVER['ROSTER_SERVER'] ?? 'unknown', "\n";
echo "visits: $visits\n";
