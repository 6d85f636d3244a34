<?php
// A request that takes a second of wall time. A plain sleep() would be cut
// short by the signal apache sends its workers on graceful-stop and on a
// graceful reload.
$end = microtime(true) + 1.0;
while (microtime(true) < $end) {
    usleep(20000);
}
echo "slow done\n";
