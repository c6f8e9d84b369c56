// vdi_client.cpp - a VDI backup program in C++ over the Linux class API
// (ClientVirtualDeviceSet / ClientVirtualDevice, as SQL Server on Linux's
// libsqlvdi.so is used), started in SQLCMD MODE: after Create it runs
//
//   sqlcmd -S <server> -E -b -Q "BACKUP DATABASE [<database>] TO VIRTUAL_DEVICE='<device>'[, ...]"
//
// (or RESTORE DATABASE ... FROM ...) as a child process found on PATH (no
// shell), serves the devices on one thread each, and waits for sqlcmd. It
// believes the operation succeeded when sqlcmd exited 0 AND every device
// ended with VD_E_CLOSE (and none of its own media operations failed).
//
//   vdi_client_cpp <backup|restore> <database> <device> <devices> <file> <server>
//
//   device   the set's name, also the first device's; device k > 0 is
//            "<device>-dev<k>"
//   devices  how many devices (1..64)
//   file     the media: device 0 uses <file>, device k > 0 uses <file>.<k>;
//            a backup creates (truncates) them, a restore reads them
//   server   passed to sqlcmd -S
//
// Exit status: 0 the program believes the operation succeeded, 1 it
// believes it failed, 2 bad usage. Progress (and sqlcmd's output) goes to
// standard error; standard output stays empty.
//
// Built with -DFLAW_<NAME> it carries one product bug (see README.md in
// this directory): TIMEOUT_FATAL, CLOSE_EARLY, FLUSH_UNANSWERED,
// SHORT_READ_SUCCESS, SUCCESS_ALWAYS, TIMEOUT_SECONDS, NO_CLOSE,
// TAMPER_BLOCK, WAIT_AFTER_ABORT, CLOSE_IS_SUCCESS.
//
// Tunables (environment, milliseconds; for test runs):
//   VDICLIENT_GETCOMMAND_MS   GetCommand timeout (default 10000)
//   VDICLIENT_CONFIG_WAIT_MS  how long to wait for the configuration while
//                             sqlcmd runs (default 60000, polled 1000 ms at
//                             a time)
//   VDICLIENT_IDLE_MS         give up (SignalAbort) after this long with no
//                             command on a device (default 300000)
#include "vdisim_vdi.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <spawn.h>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

extern char **environ;

// ----- which product bug this build carries ----------------------------------

#if defined(FLAW_TIMEOUT_FATAL) + defined(FLAW_CLOSE_EARLY) + defined(FLAW_FLUSH_UNANSWERED) +      \
        defined(FLAW_SHORT_READ_SUCCESS) + defined(FLAW_SUCCESS_ALWAYS) +                          \
        defined(FLAW_TIMEOUT_SECONDS) + defined(FLAW_NO_CLOSE) + defined(FLAW_TAMPER_BLOCK) +      \
        defined(FLAW_WAIT_AFTER_ABORT) + defined(FLAW_CLOSE_IS_SUCCESS) >                          \
    1
#error "at most one FLAW_* per build"
#endif

#if defined(FLAW_TIMEOUT_FATAL)
#define BUILD "FLAW_TIMEOUT_FATAL"
#elif defined(FLAW_CLOSE_EARLY)
#define BUILD "FLAW_CLOSE_EARLY"
#elif defined(FLAW_FLUSH_UNANSWERED)
#define BUILD "FLAW_FLUSH_UNANSWERED"
#elif defined(FLAW_SHORT_READ_SUCCESS)
#define BUILD "FLAW_SHORT_READ_SUCCESS"
#elif defined(FLAW_SUCCESS_ALWAYS)
#define BUILD "FLAW_SUCCESS_ALWAYS"
#elif defined(FLAW_TIMEOUT_SECONDS)
#define BUILD "FLAW_TIMEOUT_SECONDS"
#elif defined(FLAW_NO_CLOSE)
#define BUILD "FLAW_NO_CLOSE"
#elif defined(FLAW_TAMPER_BLOCK)
#define BUILD "FLAW_TAMPER_BLOCK"
#elif defined(FLAW_WAIT_AFTER_ABORT)
#define BUILD "FLAW_WAIT_AFTER_ABORT"
#elif defined(FLAW_CLOSE_IS_SUCCESS)
#define BUILD "FLAW_CLOSE_IS_SUCCESS"
#else
#define BUILD "correct"
#endif

#if defined(FLAW_TIMEOUT_FATAL) || defined(FLAW_TIMEOUT_SECONDS)
#define TIMEOUT_IS_FATAL 1
#else
#define TIMEOUT_IS_FATAL 0
#endif

// Win32 codes the header leaves out.
#ifndef ERROR_ACCESS_DENIED
#define ERROR_ACCESS_DENIED 5
#endif
#ifndef ERROR_WRITE_FAULT
#define ERROR_WRITE_FAULT 29
#endif
#ifndef ERROR_READ_FAULT
#define ERROR_READ_FAULT 30
#endif

namespace {

const int MAX_DEVICES = 64;
const long CONFIG_POLL_MS = 1000;

// ----- logging ---------------------------------------------------------------

std::mutex log_mu;

void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    std::lock_guard<std::mutex> l(log_mu);
    std::fprintf(stderr, "vdi_client_cpp: %s\n", line);
}

std::string hr_name(int hr) {
    switch (hr) {
    case NOERROR: return "NOERROR";
    case VD_E_TIMEOUT: return "VD_E_TIMEOUT";
    case VD_E_ABORT: return "VD_E_ABORT";
    case VD_E_INVALID: return "VD_E_INVALID";
    case VD_E_NOTSUPPORTED: return "VD_E_NOTSUPPORTED";
    case VD_E_PROTOCOL: return "VD_E_PROTOCOL";
    case VD_E_OPEN: return "VD_E_OPEN";
    case VD_E_CLOSE: return "VD_E_CLOSE";
    case VD_E_BUSY: return "VD_E_BUSY";
    default: {
        char buf[16];
        std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(hr));
        return buf;
    }
    }
}

long env_ms(const char *name, long dflt) {
    const char *v = std::getenv(name);
    if (v == nullptr || *v == 0)
        return dflt;
    char *end;
    long n = std::strtol(v, &end, 10);
    if (*end != 0 || n < 1 || n > 86400000L) {
        say("ignoring %s=%s (want 1..86400000 ms)", name, v);
        return dflt;
    }
    return n;
}

void sleep_ms(long ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// ----- the program's state -----------------------------------------------------

bool backup; // true: BACKUP (write the media), false: RESTORE (read it)
int ndev;
long getcommand_ms, config_wait_ms, idle_ms;
ClientVirtualDeviceSet *set;
bool complete_enabled;

// sqlcmd: set once its process has been waited for.
std::atomic<bool> sql_done{false};
int sql_status = -1;

#ifdef FLAW_CLOSE_EARLY
std::mutex early_mu;
int ended_count;
bool closed_early;
#endif

// ----- the media -----------------------------------------------------------------

int errno_to_win32(int e, bool writing) {
    switch (e) {
    case ENOSPC:
    case EFBIG:
#ifdef EDQUOT
    case EDQUOT:
#endif
        return ERROR_DISK_FULL;
    case EACCES:
    case EPERM:
        return ERROR_ACCESS_DENIED;
    default:
        return writing ? ERROR_WRITE_FAULT : ERROR_READ_FAULT;
    }
}

struct Device {
    int index = 0;
    std::string name, path;
    ClientVirtualDevice *dev = nullptr;
    int fd = -1;
    uint64_t media_size = 0; // restore: the file's size
    uint64_t offset = 0;     // bytes written / read so far
    unsigned long commands = 0, flushes = 0;
    bool completes = false;   // VDC_Complete answered with ERROR_SUCCESS
    bool media_error = false; // a Write/Read/Flush failed on our side
    int end = NOERROR;        // the code that ended the device's loop
    bool finished = false;    // FLAW_CLOSE_EARLY: left the loop on its own

    int write_media(const uint8_t *buf, size_t n, size_t *done) {
        size_t off = 0;
        while (off < n) {
            ssize_t w = ::write(fd, buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = w < 0 ? errno : ENOSPC;
                *done = off;
                offset += off;
                say("dev%d: write to %s failed after %llu bytes: %s", index, path.c_str(),
                    static_cast<unsigned long long>(offset), std::strerror(e));
                return errno_to_win32(e, true);
            }
            off += static_cast<size_t>(w);
        }
        *done = off;
        offset += off;
        return ERROR_SUCCESS;
    }

    int read_media(uint8_t *buf, size_t n, size_t *done) {
        size_t off = 0;
        while (off < n) {
            ssize_t r = ::read(fd, buf + off, n - off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                int e = errno;
                *done = off;
                offset += off;
                say("dev%d: read from %s failed at %llu: %s", index, path.c_str(),
                    static_cast<unsigned long long>(offset), std::strerror(e));
                return errno_to_win32(e, false);
            }
            if (r == 0)
                break;
            off += static_cast<size_t>(r);
        }
        *done = off;
        offset += off;
        if (off < n) {
#ifdef FLAW_SHORT_READ_SUCCESS
            // The bug: only a read that got nothing is the end of the media.
            if (off > 0)
                return ERROR_SUCCESS;
#endif
            return ERROR_HANDLE_EOF;
        }
        return ERROR_SUCCESS;
    }

    int sync_media() {
        if (::fsync(fd) == 0 || errno == EINVAL || errno == EROFS || errno == EBADF)
            return ERROR_SUCCESS;
        say("dev%d: fsync %s: %s", index, path.c_str(), std::strerror(errno));
        return errno_to_win32(errno, true);
    }

    void serve();
    void ended(int hr);
};

Device devs[MAX_DEVICES];

void signal_abort(const char *why) {
    say("%s: SignalAbort", why);
    int hr = set->SignalAbort();
    if (hr != NOERROR)
        say("SignalAbort = %s", hr_name(hr).c_str());
}

// The device's loop has ended with `hr`.
void Device::ended(int hr) {
#ifdef FLAW_WAIT_AFTER_ABORT
    // The bug: after VD_E_ABORT the device keeps asking for commands,
    // waiting for the VD_E_CLOSE that never comes after an abort, instead
    // of letting the program Close.
    if (hr == VD_E_ABORT) {
        say("dev%d: VD_E_ABORT; waiting for VD_E_CLOSE", index);
        while (hr != VD_E_CLOSE) {
            VDC_Command *cmd = nullptr;
            hr = dev->GetCommand(getcommand_ms, &cmd);
            if (hr == NOERROR && cmd != nullptr)
                dev->CompleteCommand(cmd, ERROR_SUCCESS, 0, 0);
            else if (hr != VD_E_CLOSE)
                sleep_ms(200);
        }
    }
#endif
    end = hr;
#ifdef FLAW_CLOSE_EARLY
    // The bug: once every device is done by the program's own reckoning
    // (the first Flush of a backup, the last byte of a restore's media),
    // the set is closed at once, without waiting for VD_E_CLOSE.
    std::lock_guard<std::mutex> l(early_mu);
    bool any_finished = false;
    for (int i = 0; i < ndev; i++)
        any_finished |= devs[i].finished;
    if (++ended_count == ndev && any_finished) {
        int c = set->Close();
        say("every device done: Close = %s", hr_name(c).c_str());
        closed_early = true;
    }
#endif
}

void Device::serve() {
#ifdef FLAW_TIMEOUT_SECONDS
    const time_t timeout = 90; // the bug: meant as 90 seconds; GetCommand takes ms
#else
    const time_t timeout = getcommand_ms;
#endif
    long idle = 0;
    for (;;) {
        const bool sql_ended_before = sql_done.load();
        VDC_Command *cmd = nullptr;
        int hr = dev->GetCommand(timeout, &cmd);
        if (hr == VD_E_TIMEOUT) {
            if (TIMEOUT_IS_FATAL) {
                // The bug: a timeout is taken for a dead server.
                say("dev%d: GetCommand timed out: the server is gone", index);
                signal_abort("timeout");
                ended(hr);
                return;
            }
            idle += timeout;
            if (sql_ended_before) {
                say("dev%d: sqlcmd has ended and the device is still open", index);
                signal_abort("statement over");
                ended(hr);
                return;
            }
            if (idle >= idle_ms) {
                say("dev%d: no command for %ld ms", index, idle);
                signal_abort("idle");
                ended(hr);
                return;
            }
            continue;
        }
        if (hr != NOERROR) {
            ended(hr);
            return;
        }
        idle = 0;
        int code = ERROR_SUCCESS;
        size_t bytes = 0;
        bool answer = true;
        switch (cmd->commandCode) {
        case VDC_Write:
            code = write_media(cmd->buffer, static_cast<size_t>(cmd->size), &bytes);
            if (code != ERROR_SUCCESS)
                media_error = true;
            break;
        case VDC_Read:
            code = read_media(cmd->buffer, static_cast<size_t>(cmd->size), &bytes);
            if (code != ERROR_SUCCESS && code != ERROR_HANDLE_EOF)
                media_error = true;
            if (code == ERROR_HANDLE_EOF)
                say("dev%d: end of media after %llu bytes", index,
                    static_cast<unsigned long long>(offset));
            break;
        case VDC_Flush:
            flushes++;
            code = sync_media();
            if (code != ERROR_SUCCESS)
                media_error = true;
#ifdef FLAW_FLUSH_UNANSWERED
            answer = false; // the bug: the flush is done but never completed
#endif
            break;
        case VDC_Complete:
            code = sync_media();
            if (code == ERROR_SUCCESS)
                completes = true;
            else
                media_error = true;
            say("dev%d: VDC_Complete after %llu bytes", index,
                static_cast<unsigned long long>(offset));
#ifdef FLAW_FLUSH_UNANSWERED
            answer = false;
#endif
            break;
        case VDC_ClearError:
            say("dev%d: VDC_ClearError", index);
            break;
        default:
            say("dev%d: command %d not supported", index, static_cast<int>(cmd->commandCode));
            code = ERROR_NOT_SUPPORTED;
        }
        commands++;
        if (!answer)
            continue;
#ifdef FLAW_TAMPER_BLOCK
        // The bug: the block's size field is used as "bytes still to do".
        if (cmd->commandCode == VDC_Read || cmd->commandCode == VDC_Write)
            cmd->size -= static_cast<int32_t>(bytes);
#endif
        hr = dev->CompleteCommand(cmd, code, bytes, 0);
        if (hr != NOERROR) {
            say("dev%d: CompleteCommand = %s", index, hr_name(hr).c_str());
            ended(hr);
            return;
        }
#ifdef FLAW_CLOSE_EARLY
        if (backup ? cmd->commandCode == VDC_Flush
                   : cmd->commandCode == VDC_Read && offset >= media_size) {
            finished = true;
            ended(NOERROR);
            return;
        }
#endif
    }
}

// ----- sqlcmd --------------------------------------------------------------------

std::string quote_name(const std::string &s) { // [name] with ] doubled
    std::string q = "[";
    for (char c : s) {
        q += c;
        if (c == ']')
            q += ']';
    }
    return q + "]";
}

std::string quote_string(const std::string &s) { // 'text' with ' doubled
    std::string q = "'";
    for (char c : s) {
        q += c;
        if (c == '\'')
            q += '\'';
    }
    return q + "'";
}

// Starts sqlcmd with the statement (no shell; its output goes to our
// standard error, its input is /dev/null); returns its pid or -1.
pid_t start_sqlcmd(const std::string &server, const std::string &tsql) {
    std::vector<std::string> args = {"sqlcmd", "-S", server, "-E", "-b", "-Q", tsql};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(&a[0]);
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, "sqlcmd", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        say("cannot run sqlcmd: %s", std::strerror(rc));
        return -1;
    }
    return pid;
}

void wait_sqlcmd(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    sql_status = status;
    sql_done.store(true);
}

// Opens the devices, serves them on one thread each until every one has
// ended, and says whether the operation succeeded as far as VDI tells.
bool run_devices(const VDConfig &cfg) {
    if ((backup && (cfg.features & VDF_ReadMedia)) || (!backup && (cfg.features & VDF_WriteMedia))) {
        say("the statement %s the media but this program was started to %s it",
            backup ? "reads" : "writes", backup ? "write" : "read");
        signal_abort("wrong direction");
        return false;
    }
    for (int i = 0; i < ndev; i++) {
        int hr = set->OpenDevice(&devs[i].name[0], &devs[i].dev);
        if (hr != NOERROR) {
            say("OpenDevice '%s' = %s", devs[i].name.c_str(), hr_name(hr).c_str());
            if (hr != VD_E_ABORT)
                signal_abort("open failed");
            return false;
        }
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < ndev; i++)
        threads.emplace_back(&Device::serve, &devs[i]);
    for (auto &t : threads)
        t.join();
    bool ok = true;
    for (int i = 0; i < ndev; i++) {
        const Device &d = devs[i];
        say("dev%d '%s': %s after %lu commands, %llu bytes%s", i, d.name.c_str(),
            hr_name(d.end).c_str(), d.commands, static_cast<unsigned long long>(d.offset),
            d.media_error ? ", media error" : "");
        bool closed = d.end == VD_E_CLOSE;
#ifdef FLAW_CLOSE_EARLY
        closed = closed || d.finished;
#endif
        if (!closed || d.media_error)
            ok = false;
        // With VDC_Complete negotiated, a backup is whole only once every
        // device has answered it.
        if (backup && complete_enabled && !d.completes && d.end == VD_E_CLOSE)
            ok = false;
    }
    return ok;
}

int finish(bool ok) {
    say("%s %s", backup ? "backup" : "restore", ok ? "succeeded" : "FAILED");
#ifdef FLAW_SUCCESS_ALWAYS
    return 0; // the bug: the outcome is never looked at
#else
    return ok ? 0 : 1;
#endif
}

int usage() {
    std::fprintf(stderr, "usage: vdi_client_cpp <backup|restore> <database> <device> <devices> "
                         "<file> <server>\n");
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 7)
        return usage();
    const std::string op = argv[1];
    if (op != "backup" && op != "restore")
        return usage();
    backup = op == "backup";
    const std::string database = argv[2], setname = argv[3], file = argv[5], server = argv[6];
    char *end;
    long n = std::strtol(argv[4], &end, 10);
    if (*end != 0 || n < 1 || n > MAX_DEVICES || setname.empty() || file.empty())
        return usage();
    ndev = static_cast<int>(n);
    getcommand_ms = env_ms("VDICLIENT_GETCOMMAND_MS", 10000);
    config_wait_ms = env_ms("VDICLIENT_CONFIG_WAIT_MS", 60000);
    idle_ms = env_ms("VDICLIENT_IDLE_MS", 300000);
    // A file-size limit must fail the write (EFBIG), not kill the program.
    std::signal(SIGXFSZ, SIG_IGN);
    std::signal(SIGPIPE, SIG_IGN);
    say("%s of [%s] on %d device(s) '%s', media %s, server %s (build %s, sqlcmd mode)",
        op.c_str(), database.c_str(), ndev, setname.c_str(), file.c_str(), server.c_str(), BUILD);

    // The media first: a program that cannot open them does not start.
    for (int i = 0; i < ndev; i++) {
        Device &d = devs[i];
        d.index = i;
        d.name = i == 0 ? setname : setname + "-dev" + std::to_string(i);
        d.path = i == 0 ? file : file + "." + std::to_string(i);
        d.fd = backup ? ::open(d.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
                      : ::open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (d.fd < 0) {
            say("cannot open %s: %s", d.path.c_str(), std::strerror(errno));
            return finish(false);
        }
        struct stat st;
        if (!backup && ::fstat(d.fd, &st) == 0)
            d.media_size = static_cast<uint64_t>(st.st_size);
    }

    set = new ClientVirtualDeviceSet();
    VDConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = static_cast<uint32_t>(ndev);
    cfg.features = VDF_LikePipe | VDF_RequestComplete;
    cfg.serverTimeOut = 60000;
    std::string name = setname;
    int hr = set->Create(&name[0], &cfg);
    if (hr != NOERROR) {
        say("Create '%s' = %s", setname.c_str(), hr_name(hr).c_str());
        delete set;
        return finish(false);
    }

    std::string tsql = backup ? "BACKUP DATABASE " + quote_name(database) + " TO "
                              : "RESTORE DATABASE " + quote_name(database) + " FROM ";
    for (int i = 0; i < ndev; i++)
        tsql += (i ? ", VIRTUAL_DEVICE=" : "VIRTUAL_DEVICE=") + quote_string(devs[i].name);
    say("sqlcmd -S %s -E -b -Q \"%s\"", server.c_str(), tsql.c_str());
    const pid_t pid = start_sqlcmd(server, tsql);
    std::thread waiter;
    if (pid > 0)
        waiter = std::thread(wait_sqlcmd, pid);

    // Wait for the server to configure the set while sqlcmd runs.
    long waited = 0;
    hr = VD_E_TIMEOUT;
    while (pid > 0) {
        hr = set->GetConfiguration(CONFIG_POLL_MS, &cfg);
        if (hr != VD_E_TIMEOUT)
            break;
        waited += CONFIG_POLL_MS;
        if (sql_done.load() || waited >= config_wait_ms)
            break;
    }
    bool ok = false;
    if (pid <= 0) {
        say("no statement: the set is closed");
    } else if (hr != NOERROR) {
        say("GetConfiguration = %s after %ld ms%s", hr_name(hr).c_str(), waited,
            sql_done.load() ? ": sqlcmd ended before the server opened the set" : "");
    } else {
        complete_enabled = (cfg.features & VDF_CompleteEnabled) != 0;
        say("configured: deviceCount=%u blockSize=%u maxTransferSize=%u features=0x%x",
            cfg.deviceCount, cfg.blockSize, cfg.maxTransferSize, cfg.features);
        ok = run_devices(cfg);
    }

    bool close_it = true;
#ifdef FLAW_CLOSE_EARLY
    close_it = !closed_early;
#endif
#ifdef FLAW_NO_CLOSE
    say("exiting without Close"); // the bug
    close_it = false;
#endif
    if (close_it) {
        hr = set->Close();
        if (hr != NOERROR) {
            say("Close = %s", hr_name(hr).c_str());
            ok = false;
        }
    }

    // The statement's own verdict: sqlcmd's exit status (bounded wait; a
    // sqlcmd that does not end is stopped).
    if (pid > 0) {
        for (int i = 0; i < 600 && !sql_done.load(); i++)
            sleep_ms(100);
        if (!sql_done.load()) {
            say("sqlcmd has not ended 60 s after the devices: stopping it");
            ::kill(pid, SIGTERM);
            for (int i = 0; i < 50 && !sql_done.load(); i++)
                sleep_ms(100);
            if (!sql_done.load())
                ::kill(pid, SIGKILL);
        }
        waiter.join();
        if (WIFEXITED(sql_status))
            say("sqlcmd exit status %d", WEXITSTATUS(sql_status));
        else
            say("sqlcmd ended by signal %d", WIFSIGNALED(sql_status) ? WTERMSIG(sql_status) : 0);
#ifdef FLAW_CLOSE_IS_SUCCESS
        // the bug: clean VD_E_CLOSEs are taken for success; sqlcmd's
        // verdict is printed but not read
#else
        if (!WIFEXITED(sql_status) || WEXITSTATUS(sql_status) != 0)
            ok = false;
#endif
    } else {
        ok = false;
    }

    for (int i = 0; i < ndev; i++) {
        if (backup && ::fsync(devs[i].fd) != 0 && errno != EINVAL)
            ok = false;
        ::close(devs[i].fd);
    }
#ifndef FLAW_NO_CLOSE
    delete set; // devices go with their set object
#endif
    return finish(ok);
}
