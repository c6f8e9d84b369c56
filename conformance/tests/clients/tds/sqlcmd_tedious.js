// A sqlcmd look-alike over Node's tedious driver, for
// conformance/tests/serve_tds_drivers.rs (the same contract as
// sqlcmd_driver.py): `sqlcmd -S HOST,PORT -E -b -Q STATEMENT`; a
// single-device BACKUP/RESTORE to a VIRTUAL_DEVICE is sent parameterized
// (`VIRTUAL_DEVICE = @dev`, tedious' execSql: an RPC to sp_executesql).
// Prints `INFO <text>` per message, `ERROR <number> <text>` for a failure;
// exits 0 on success, 1 on an error, 2 on bad usage.
// Environment: VDISIM_DRIVER_ENCRYPT plain | full (tedious has no
// login-only mode), VDISIM_DRIVER_USER, VDISIM_DRIVER_PASSWORD; the module
// is found through NODE_PATH.
'use strict';
const { Connection, Request, TYPES } = require('tedious');

const argv = process.argv.slice(2);
let server = null;
let query = null;
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '-S') server = argv[++i];
  else if (argv[i] === '-Q') query = argv[++i];
  else if (argv[i] !== '-E' && argv[i] !== '-b') {
    console.error(`sqlcmd_tedious: unknown argument ${argv[i]}`);
    process.exit(2);
  }
}
if (!server || query === null) {
  console.error('usage: sqlcmd_tedious -S HOST,PORT -E -b -Q STATEMENT');
  process.exit(2);
}
const [host, port] = server.replace(/^tcp:/, '').split(',');
const m = /^(BACKUP|RESTORE) DATABASE \[(.+)\] (TO|FROM) VIRTUAL_DEVICE='((?:[^']|'')*)'$/s.exec(query.trim());
const full = process.env.VDISIM_DRIVER_ENCRYPT === 'full';
const c = new Connection({
  server: host,
  authentication: {
    type: 'default',
    options: {
      userName: process.env.VDISIM_DRIVER_USER || 'sa',
      password: process.env.VDISIM_DRIVER_PASSWORD || 'vdisim',
    },
  },
  options: {
    port: Number(port || 1433),
    encrypt: full,
    trustServerCertificate: true,
    connectTimeout: 20000,
    requestTimeout: 60000,
  },
});
c.on('infoMessage', (i) => console.log('INFO', i.message));
c.on('errorMessage', (e) => console.log('ERRMSG', e.number, e.message));
c.connect((err) => {
  if (err) {
    console.log('ERROR', err.number || 0, String(err));
    process.exit(1);
  }
  const v = new Request('SELECT @@VERSION', (e) => {
    if (e) {
      console.log('ERROR', e.number || 0, String(e));
      process.exit(1);
    }
    const r = new Request(
      m ? `${m[1]} DATABASE [${m[2]}] ${m[3]} VIRTUAL_DEVICE = @dev` : query,
      (e2) => {
        c.close();
        if (e2) {
          // Several ERROR tokens come as an AggregateError (tedious 16+).
          const first = e2.errors && e2.errors.length ? e2.errors[0] : e2;
          console.log('ERROR', first.number || 0, String(first.message));
          process.exitCode = 1;
        }
      },
    );
    if (m) {
      r.addParameter('dev', TYPES.NVarChar, m[4].replace(/''/g, "'"));
      c.execSql(r);
    } else {
      c.execSqlBatch(r);
    }
  });
  v.on('row', (cols) => console.log('VERSION', String(cols[0].value).split('\n')[0]));
  c.execSqlBatch(v);
});
