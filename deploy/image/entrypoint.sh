#!/bin/sh
# The image's entrypoint: the first argument names the program when it is one of the image's binaries
# (`discoverer`, `org-creator`, `importer`, `bb2snyk`, `sandbox`); anything else is a `bb2snyk` command, so
# `docker run IMAGE discover --groupId=G` and `docker compose run --rm bb2snyk status` work as written.
set -e
case "${1:-}" in
  discoverer|org-creator|importer|bb2snyk|sandbox) exec "$@" ;;
  "") exec bb2snyk --help ;;
  *) exec bb2snyk "$@" ;;
esac
