<?php
// The variables named in ?names=A,B as the page sees them, as a JSON object
// (null for one that is not set): what the env attribute gives the site.
header('Content-Type: application/json');
$out = [];
foreach (explode(',', $_GET['names'] ?? '') as $name) {
    $out[$name] = $_SERVER[$name] ?? null;
}
echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), "\n";
