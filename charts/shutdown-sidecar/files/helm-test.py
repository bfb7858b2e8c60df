# `helm test`: GET /readyz and /livez on the admin port of every address HOST resolves to (a headless
# Service: one address per ready pod). Exit status 1 with the failing URL when any answer is not 200.
# Run as `python -c "$(cat helm-test.py)" HOST PORT`; standard library only (the sidecar's image).
import socket
import sys
import time
import urllib.request

host, port = sys.argv[1], int(sys.argv[2])
# The headless Service is created just before this pod; its DNS records follow within seconds.
deadline = time.monotonic() + 60
while True:
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
        break
    except socket.gaierror as error:
        if time.monotonic() > deadline:
            sys.exit(f"{host}: {error}")
        time.sleep(1)
for address in addresses:
    for path in ("/readyz", "/livez"):
        url = f"http://{f'[{address}]' if ':' in address else address}:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http by design)
                print(url, response.status)
        except OSError as error:  # HTTPError (a non-2xx answer) included
            sys.exit(f"{url}: {error}")
print(f"{len(addresses)} pod(s): /readyz and /livez answered 200")
