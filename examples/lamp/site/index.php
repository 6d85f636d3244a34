<?php
// The lamp example's page: counts visits in the web server's own memcached,
// which the web role names in $_SERVER['ROSTER_MEMCACHED'] (host:port).
header('Content-Type: text/plain; charset=utf-8');

$server = $_SERVER['ROSTER_SERVER'] ?? 'unknown';
$visits = 'n/a';
$addr = $_SERVER['ROSTER_MEMCACHED'] ?? '';
if ($addr !== '' && class_exists('Memcached')) {
    [$host, $port] = explode(':', $addr, 2);
    $mc = new Memcached();
    $mc->addServer($host, (int) $port);
    // increment fails on a missing key; add it first (add is atomic, so two
    // first visits do not both start at 1).
    $mc->add('visits', 0);
    $n = $mc->increment('visits');
    $visits = $n === false ? 'n/a (memcached: ' . $mc->getResultMessage() . ')' : (string) $n;
}

echo "server: $server\n";
echo "visits: $visits\n";
