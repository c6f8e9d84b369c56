"""A sqlcmd look-alike over a real Python TDS driver, for
conformance/tests/serve_tds_drivers.rs: the C++ VDI client
(vdi_client.cpp, sqlcmd mode) runs it as `sqlcmd -S HOST,PORT -E -b -Q
STATEMENT`. A single-device `BACKUP|RESTORE DATABASE [db] TO|FROM
VIRTUAL_DEVICE='name'` is sent the way products send it, parameterized
(`... VIRTUAL_DEVICE = @dev`) through the driver's own parameter mechanism
(an RPC: sp_executesql or sp_prepexec); any other statement is sent as it
is. Prints `INFO <text>` per message and `ERROR <number> <text>` for a
failure; exits 0 on success, 1 on an error (as `sqlcmd -b`), 2 on bad
usage.

Environment:
  VDISIM_DRIVER          pytds | mssql_python | pymssql
  VDISIM_DRIVER_ENCRYPT  plain (no TLS) | login (TLS for the login only) |
                         full (TLS for the whole session) | strict (TDS 8,
                         mssql_python only)
  VDISIM_DRIVER_CAFILE   pytds, mssql_python strict: the server's certificate
                         (PEM) to trust
  VDISIM_DRIVER_USER, VDISIM_DRIVER_PASSWORD   the SQL login
  VDISIM_DRIVER_PARAMS   0: send the statement as a SQL batch instead
"""

import os
import re
import sys

STATEMENT = re.compile(
    r"^(BACKUP|RESTORE) DATABASE \[(.+)\] (TO|FROM) VIRTUAL_DEVICE='((?:[^']|'')*)'$", re.S
)


def parse_args(argv):
    server, query = None, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-S", "-Q") and i + 1 < len(argv):
            if a == "-S":
                server = argv[i + 1]
            else:
                query = argv[i + 1]
            i += 2
        elif a in ("-E", "-b"):
            i += 1
        else:
            sys.exit("sqlcmd_driver: unknown argument %r" % a)
    if not server or query is None:
        sys.exit("usage: sqlcmd_driver -S HOST,PORT -E -b -Q STATEMENT")
    host, _, port = server.removeprefix("tcp:").partition(",")
    return host, int(port or "1433"), query


def parameterized(query, marker):
    """The statement with its device name as a parameter, and the value
    (unless VDISIM_DRIVER_PARAMS=0: then the statement as it is)."""
    m = STATEMENT.match(query.strip())
    if os.environ.get("VDISIM_DRIVER_PARAMS") == "0":
        m = None
    if not m:
        return query, None
    op, db, to, dev = m.groups()
    return "%s DATABASE [%s] %s VIRTUAL_DEVICE = %s" % (op, db, to, marker), dev.replace("''", "'")


def run_pytds(host, port, query, user, password, mode):
    import pytds

    kw = {}
    if mode in ("login", "full"):
        kw = {"cafile": os.environ["VDISIM_DRIVER_CAFILE"], "validate_host": False}
        if mode == "login":
            kw["enc_login_only"] = True
    conn = pytds.connect(server=host, port=port, user=user, password=password,
                         autocommit=True, login_timeout=20, timeout=60, **kw)
    cur = conn.cursor()
    cur.execute("SELECT @@VERSION")
    print("VERSION", cur.fetchone()[0].splitlines()[0])
    text, dev = parameterized(query, "%s")
    try:
        cur.execute(text, (dev,) if dev is not None else None)
    except pytds.tds_base.Error as e:
        for m in cur.messages or []:
            print("INFO", m[1])
        print("ERROR", getattr(e, "msg_no", 0), e)
        return 1
    for m in cur.messages or []:
        print("INFO", m[1])
    return 0


def run_mssql_python(host, port, query, user, password, mode):
    import mssql_python

    enc = {"plain": "Encrypt=no", "login": "Encrypt=no",
           "full": "Encrypt=yes;TrustServerCertificate=yes",
           # TDS 8: TLS first; the certificate is checked against the file.
           "strict": "Encrypt=strict;ServerCertificate=%s" % os.environ.get("VDISIM_DRIVER_CAFILE")}[mode]
    conn = mssql_python.connect(
        "Server=%s,%d;UID=%s;PWD=%s;%s" % (host, port, user, password, enc), autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT @@VERSION")
    print("VERSION", cur.fetchone()[0].splitlines()[0])
    text, dev = parameterized(query, "?")
    # cursor.messages holds the diagnostics of the last call only
    # (execute, then each nextset): print them after each.
    def show():
        for state, text in cur.messages:
            print("INFO", state, text)
    try:
        if dev is None:
            cur.execute(text)
        else:
            cur.execute(text, dev)  # sp_prepexec
        show()
        while cur.nextset():
            show()
        show()
    except mssql_python.Error as e:
        show()
        # mssql-python keeps SQLSTATE and the text, not the native number.
        print("ERROR", 0, e)
        return 1
    return 0


def run_pymssql(host, port, query, user, password, mode):
    import pymssql
    from pymssql import _mssql

    enc = {"plain": "off", "login": "request", "full": "require"}[mode]
    conn = pymssql.connect(server=host, port=str(port), user=user, password=password,
                           tds_version="7.4", encryption=enc, autocommit=True, login_timeout=20)
    infos = []
    conn._conn.set_msghandler(lambda state, severity, srv, proc, line, text: infos.append(text))
    cur = conn.cursor()
    cur.execute("SELECT @@VERSION")
    print("VERSION", cur.fetchone()[0].splitlines()[0])
    text, dev = parameterized(query, "@dev")
    try:
        if dev is None:
            cur.execute(text)
        else:
            # An RPC to sp_executesql with typed parameters (DB-Library's
            # dbrpcinit/dbrpcparam), as a product using FreeTDS sends it.
            proc = conn._conn.init_procedure("sp_executesql")
            proc.bind(text, _mssql.SQLVARCHAR, "@statement")
            proc.bind("@dev nvarchar(128)", _mssql.SQLVARCHAR, "@params")
            proc.bind(dev, _mssql.SQLVARCHAR, "@dev")
            proc.execute()
    except (pymssql.Error, _mssql.MSSQLException) as e:
        for t in infos:
            print("INFO", t if isinstance(t, str) else t.decode())
        num = getattr(e, "number", None) or (e.args[0] if e.args else 0)
        print("ERROR", num, e)
        return 1
    for t in infos:
        print("INFO", t if isinstance(t, str) else t.decode())
    return 0


def main():
    host, port, query = parse_args(sys.argv[1:])
    driver = os.environ.get("VDISIM_DRIVER", "pytds")
    mode = os.environ.get("VDISIM_DRIVER_ENCRYPT", "plain")
    user = os.environ.get("VDISIM_DRIVER_USER", "sa")
    password = os.environ.get("VDISIM_DRIVER_PASSWORD", "vdisim")
    run = {"pytds": run_pytds, "mssql_python": run_mssql_python, "pymssql": run_pymssql}[driver]
    sys.stdout.flush()
    code = run(host, port, query, user, password, mode)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
