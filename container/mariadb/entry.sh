#!/bin/sh
# The official mysql image's contract, on Debian's MariaDB, so that perfsuite's
# container provider (testcontainers' MySqlContainer) works unchanged with
# either: MYSQL_ROOT_PASSWORD or MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_DATABASE,
# MYSQL_USER and MYSQL_PASSWORD, scripts in /docker-entrypoint-initdb.d, port
# 3306, and "ready for connections" logged twice: by a temporary server that
# initialises the datadir, then by the real one. As with the official image,
# the container's command may be server options (`--performance-schema=ON`),
# with or without `mysqld`/`mariadbd` before them.
set -eu

case "${1:-}" in
    mysqld | mariadbd) shift ;;
esac

if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
    echo "error: database is uninitialized and password option is not specified" >&2
    echo "  You need to specify one of MYSQL_ROOT_PASSWORD and MYSQL_ALLOW_EMPTY_PASSWORD" >&2
    exit 1
fi

quote() { # a SQL string literal
    printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"
}

DATADIR=/var/lib/mysql
INIT_SOCKET=/run/mysqld/init.sock
mkdir -p /run/mysqld "$DATADIR"
chown mysql:mysql /run/mysqld "$DATADIR"

if [ ! -d "$DATADIR/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
        --auth-root-authentication-method=normal > /dev/null
    # No --log-error: without it the log goes to stderr, i.e. the container's log.
    mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$INIT_SOCKET" &
    init_pid=$!
    i=0
    until mariadb-admin --socket="$INIT_SOCKET" -uroot ping > /dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 120 ]; then echo "error: the temporary server did not start" >&2; exit 1; fi
        sleep 0.5
    done
    {
        echo "SET @@SESSION.SQL_LOG_BIN = 0;"
        password=$(quote "${MYSQL_ROOT_PASSWORD:-}")
        echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY $password;"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $password;"
        if [ -n "${MYSQL_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [ -n "${MYSQL_USER:-}" ] && [ "$MYSQL_USER" != root ]; then
            echo "CREATE USER $(quote "$MYSQL_USER")@'%' IDENTIFIED BY $(quote "${MYSQL_PASSWORD:-}");"
            if [ -n "${MYSQL_DATABASE:-}" ]; then
                echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(quote "$MYSQL_USER")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$INIT_SOCKET" -uroot
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$script" ] || continue
        echo "running $script"
        # MYSQL_PWD, not -p: an empty -p would prompt (and read the script as the password).
        MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-}" mariadb --socket="$INIT_SOCKET" -uroot \
            ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} < "$script"
    done
    kill "$init_pid"
    wait "$init_pid" || true
    echo "MariaDB init process done. Ready for start up."
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --bind-address=0.0.0.0 --port=3306 \
    --socket=/run/mysqld/mysqld.sock --skip-name-resolve "$@"
