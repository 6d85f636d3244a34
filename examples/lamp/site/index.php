<?php
// The lamp example's page: counts visits in this web server's memcached
// (the web role names it in $_SERVER['ROSTER_MEMCACHED']) and shows a
// greeting read from the db role's PostgreSQL through memcached: a
// read-through cache kept 10 s, so the db sees about one query per web
// server every 10 s, as a LAMP site would cache its reads.
header('Content-Type: text/plain; charset=utf-8');

$server = $_SERVER['ROSTER_SERVER'] ?? 'unknown';

// ?work_ms=N (at most 1000) holds the request N ms before answering, as a
// page waiting on a slower backend would. The load test asks for it, so that
// busy workers come from requests in flight rather than from how fast two
// shared cores run PHP.
$work = min(1000, max(0, (int) ($_GET['work_ms'] ?? 0)));
if ($work > 0) {
    usleep($work * 1000);
}

function fail(string $why): never
{
    http_response_code(503);
    echo $why, "\n";
    exit;
}

// The db's connection string: its host:port, which the web role hands
// over from the db role's endpoint (roles/web.hcl, env), and the rest.
function conninfo(): string
{
    $addr = $_SERVER['LAMP_DB_HOST_PORT'] ?? '';
    $i = strrpos($addr, ':');
    if ($i === false) {
        fail('db: LAMP_DB_HOST_PORT is not host:port');
    }
    $host = trim(substr($addr, 0, $i), '[]'); // [::1]:5432 too
    $port = substr($addr, $i + 1);
    return "host=$host port=$port " . ($_SERVER['LAMP_DB'] ?? '');
}

[$host, $port] = array_pad(explode(':', $_SERVER['ROSTER_MEMCACHED'] ?? '', 2), 2, '0');
$mc = new Memcached();
$mc->addServer($host, (int) $port);

// increment fails on a missing key; add it first (add is atomic, so two
// first visits do not both start at 1).
$mc->add('visits', 0);
$visits = $mc->increment('visits');
if ($visits === false) {
    fail('memcached: ' . $mc->getResultMessage());
}

$greeting = $mc->get('greeting');
if ($greeting === false) {
    $db = @pg_connect(conninfo());
    if ($db === false) {
        fail('db: cannot connect');
    }
    $res = @pg_query($db, 'SELECT message FROM greeting ORDER BY id LIMIT 1');
    $row = $res === false ? false : pg_fetch_row($res);
    pg_close($db);
    if ($row === false) {
        fail('db: no greeting');
    }
    $greeting = $row[0];
    $mc->set('greeting', $greeting, 10);
}

echo "server: $server\n";
echo "visits: $visits\n";
echo "greeting: $greeting\n";
