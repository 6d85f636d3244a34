<?php
// The tests' health_path: 200 while PHP runs and memcached answers, 503
// otherwise.
header('Content-Type: text/plain; charset=utf-8');
[$host, $port] = array_pad(explode(':', $_SERVER['ROSTER_MEMCACHED'] ?? '', 2), 2, '0');
$mc = new Memcached();
$mc->addServer($host, (int) $port);
if ($mc->getStats() === false || $mc->getResultCode() !== Memcached::RES_SUCCESS) {
    http_response_code(503);
    echo 'memcached: ', $mc->getResultMessage(), "\n";
    exit;
}
echo "ok\n";
