// cpp_linux_client.cpp - a VDI backup client in C++ over the Linux class API
// (ClientVirtualDeviceSet / ClientVirtualDevice, as SQL Server on Linux's
// libsqlvdi.so and Microsoft's Linux sample use it): the control thread
// creates the set, waits for the configuration and opens the devices; one
// std::thread per device runs the GetCommand / CompleteCommand loop until
// VD_E_CLOSE, completing unknown commands with ERROR_NOT_SUPPORTED. The
// "media" is memory: what a device receives during BACKUP it hands back
// during RESTORE.
//
// Build (Linux):
//   g++ -std=c++17 -Wall -Werror -I sim/standin/include cpp_linux_client.cpp
//       -L <dir of libsqlvdi.so> -lsqlvdi -lpthread -o cpp_linux_client
// Run against the stand-in's in-process server:
//   VDISIM_PLAN=plan.toml LD_LIBRARY_PATH=<dir> ./cpp_linux_client <mode>
//
// Modes, output and exit status: as c_com_client.c (roundtrip, reuse,
// close-open, abort, server-abort; lines "<phase>: <what> = <code>", a last
// line "RESULT <mode> <outcome>"; exit 0 succeeded, 3 statement failed,
// 1 unexpected code, 2 usage).
//
// Mode "sqlcmd-roundtrip [database]" runs against a `vdisim serve` process
// instead (VDISIM_SERVER names its socket): it starts each BACKUP and
// RESTORE the way many backup programs do, by running `sqlcmd -b -Q ...`
// from PATH on a thread of its own, and takes sqlcmd's exit status as the
// statement's outcome. Modes "sqlcmd-backup database dir" and
// "sqlcmd-restore database dir" are its two halves as separate runs: the
// backup keeps each device's media in dir/dev<i>.media, the restore reads
// them back from there (a backup restored later, by another server).
#include "vdisim_vdi.h"

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string>
#include <thread>
#include <vector>

namespace {

const int NDEV = 3;
const char *const SET_NAME = "vdisim-sample";
const unsigned long PARK_AFTER = 2; // close-open / abort: commands per device before acting

std::string hr_name(int hr) {
    switch (hr) {
    case NOERROR: return "NOERROR";
    case VD_E_NOTOPEN: return "VD_E_NOTOPEN";
    case VD_E_TIMEOUT: return "VD_E_TIMEOUT";
    case VD_E_ABORT: return "VD_E_ABORT";
    case VD_E_INVALID: return "VD_E_INVALID";
    case VD_E_NOTSUPPORTED: return "VD_E_NOTSUPPORTED";
    case VD_E_PROTOCOL: return "VD_E_PROTOCOL";
    case VD_E_OPEN: return "VD_E_OPEN";
    case VD_E_CLOSE: return "VD_E_CLOSE";
    default: {
        char buf[16];
        std::snprintf(buf, sizeof buf, "0x%08x", static_cast<unsigned>(hr));
        return buf;
    }
    }
}

int failures = 0;

// Prints "<phase>: <what> = <code>" and notes a mismatch.
void expect(const std::string &phase, const std::string &what, int got, int want) {
    std::printf("%s: %s = %s\n", phase.c_str(), what.c_str(), hr_name(got).c_str());
    if (got != want) {
        std::printf("UNEXPECTED: %s: %s wanted %s\n", phase.c_str(), what.c_str(),
                    hr_name(want).c_str());
        failures++;
    }
}

struct Media {
    std::vector<uint8_t> data;
    size_t cursor = 0;
};

// The gate the control thread uses to act "mid-stream" deterministically:
// parked devices have completed PARK_AFTER commands and wait to be let go.
class Gate {
public:
    void park() {
        std::unique_lock<std::mutex> l(mu_);
        parked_++;
        cv_.notify_all();
        cv_.wait(l, [this] { return released_; });
    }
    void wait_parked(int n) {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return parked_ >= n; });
    }
    void release() {
        std::lock_guard<std::mutex> l(mu_);
        released_ = true;
        cv_.notify_all();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int parked_ = 0;
    bool released_ = false;
};

struct Worker {
    ClientVirtualDevice *dev = nullptr;
    Media *media = nullptr;
    Gate *gate = nullptr; // null: never park
    int end = NOERROR;    // the code that ended the loop
    unsigned long commands = 0;

    void run() {
        for (;;) {
            if (gate && commands == PARK_AFTER)
                gate->park();
            VDC_Command *cmd = nullptr;
            int rc = dev->GetCommand(-1, &cmd); // negative: wait forever
            if (rc != NOERROR) {
                end = rc; // VD_E_CLOSE: the normal end
                return;
            }
            int code = ERROR_SUCCESS;
            unsigned long bytes = 0;
            switch (cmd->commandCode) {
            case VDC_Write:
                media->data.insert(media->data.end(), cmd->buffer, cmd->buffer + cmd->size);
                bytes = static_cast<unsigned long>(cmd->size);
                break;
            case VDC_Read: {
                size_t left = media->data.size() - media->cursor;
                size_t n = left < static_cast<size_t>(cmd->size) ? left : cmd->size;
                std::memcpy(cmd->buffer, media->data.data() + media->cursor, n);
                media->cursor += n;
                bytes = n;
                if (n == 0)
                    code = ERROR_HANDLE_EOF;
                break;
            }
            case VDC_Flush:
            case VDC_ClearError:
                break;
            default:
                code = ERROR_NOT_SUPPORTED;
            }
            rc = dev->CompleteCommand(cmd, code, bytes, 0);
            if (rc != NOERROR) {
                end = rc;
                return;
            }
            commands++;
        }
    }
};

enum class Action { None, Close, Abort };

class Client {
public:
    Client() {
        names_.push_back(SET_NAME);
        for (int i = 1; i < NDEV; i++)
            names_.push_back(std::string(SET_NAME) + "-dev" + std::to_string(i));
    }

    void create(ClientVirtualDeviceSet &set, const std::string &phase, const std::string &what) {
        VDConfig cfg;
        std::memset(&cfg, 0, sizeof cfg);
        cfg.deviceCount = NDEV;
        cfg.features = VDF_LikePipe;
        expect(phase, what, set.Create(const_cast<char *>(names_[0].c_str()), &cfg), NOERROR);
    }

    // GetConfiguration, then OpenDevice for every device; exits on failure.
    void open_devices(ClientVirtualDeviceSet &set, const std::string &phase) {
        VDConfig cfg;
        int rc = set.GetConfiguration(30000, &cfg);
        expect(phase, "GetConfiguration", rc, NOERROR);
        if (rc != NOERROR)
            std::exit(1);
        std::printf("%s: deviceCount=%u blockSize=%u maxTransferSize=%u %s\n", phase.c_str(),
                    cfg.deviceCount, cfg.blockSize, cfg.maxTransferSize,
                    (cfg.features & VDF_WriteMedia)  ? "WriteMedia"
                    : (cfg.features & VDF_ReadMedia) ? "ReadMedia"
                                                     : "no-media-flag");
        for (int i = 0; i < NDEV; i++) {
            devs_[i] = nullptr;
            rc = set.OpenDevice(const_cast<char *>(names_[i].c_str()), &devs_[i]);
            expect(phase, "OpenDevice dev" + std::to_string(i), rc, NOERROR);
            if (rc != NOERROR)
                std::exit(1);
        }
    }

    // Runs the device threads to their end; with an action, closes or
    // aborts from this thread once every device completed PARK_AFTER
    // commands.
    void run_devices(ClientVirtualDeviceSet &set, const std::string &phase, Action act,
                     int want_end) {
        Gate gate;
        Worker w[NDEV];
        std::vector<std::thread> threads;
        for (int i = 0; i < NDEV; i++) {
            w[i].dev = devs_[i];
            w[i].media = &media_[i];
            w[i].gate = act == Action::None ? nullptr : &gate;
            threads.emplace_back(&Worker::run, &w[i]);
        }
        if (act != Action::None) {
            gate.wait_parked(NDEV);
            std::printf("%s: every device completed %lu commands\n", phase.c_str(), PARK_AFTER);
            if (act == Action::Close)
                expect(phase, "Close with devices open", set.Close(), VD_E_OPEN);
            else
                expect(phase, "SignalAbort", set.SignalAbort(), NOERROR);
            gate.release();
        }
        for (int i = 0; i < NDEV; i++) {
            threads[i].join();
            expect(phase, "dev" + std::to_string(i) + " end", w[i].end, want_end);
        }
    }

    // The statement's outcome from the in-process server and the SQL
    // message numbers it reported.
    int statement(const std::string &phase) {
        std::vector<char> json(65536);
        int st = vdisim_statement_outcome(30000, json.data(), json.size(), nullptr);
        const char *name = st == VDISIM_OUTCOME_SUCCEEDED ? "SUCCEEDED"
                           : st == VDISIM_OUTCOME_FAILED  ? "FAILED"
                           : st == VDISIM_OUTCOME_RUNNING ? "RUNNING"
                                                          : "NONE";
        std::printf("%s: statement = %s messages", phase.c_str(), name);
        for (const char *p = json.data(); (p = std::strstr(p, "\"number\":")) != nullptr; p++)
            std::printf(" %ld", std::strtol(p + 9, nullptr, 10));
        std::printf("\n");
        return st;
    }

    // Every 512-byte block a device stored starts with its stream's origin
    // and its offset in that stream: one origin per device, no gap.
    bool check_stored(const std::string &phase) {
        unsigned long long total = 0;
        uint64_t origins[NDEV] = {};
        for (int i = 0; i < NDEV; i++) {
            const std::vector<uint8_t> &d = media_[i].data;
            if (d.empty() || d.size() % 512 != 0) {
                std::printf("UNEXPECTED: %s: dev%d stored %zu bytes\n", phase.c_str(), i,
                            d.size());
                return false;
            }
            // The family's 64 KiB media header, then 512-byte blocks tagged
            // with their stream and media position (docs/MEDIA.md).
            if (d.size() < 65536 || std::memcmp(d.data(), "VDISIMMF", 8) != 0) {
                std::printf("UNEXPECTED: %s: dev%d has no media header\n", phase.c_str(), i);
                return false;
            }
            for (size_t off = 65536; off < d.size(); off += 512) {
                uint64_t origin, pos;
                std::memcpy(&origin, d.data() + off, 8);
                std::memcpy(&pos, d.data() + off + 8, 8);
                if (off == 65536)
                    origins[i] = origin;
                if (origin != origins[i] || pos != off) {
                    std::printf("UNEXPECTED: %s: dev%d block at %zu has origin %llx offset %llu\n",
                                phase.c_str(), i, off, static_cast<unsigned long long>(origin),
                                static_cast<unsigned long long>(pos));
                    return false;
                }
            }
            for (int j = 0; j < i; j++)
                if (origins[j] == origins[i]) {
                    std::printf("UNEXPECTED: %s: dev%d and dev%d share a stream\n", phase.c_str(),
                                j, i);
                    return false;
                }
            total += d.size();
        }
        std::printf("%s: stored %llu bytes on %d devices, its media header and every block tagged with its stream and "
                    "offset\n",
                    phase.c_str(), total, NDEV);
        return true;
    }

    void check_read_back(const std::string &phase) {
        unsigned long long total = 0;
        for (int i = 0; i < NDEV; i++) {
            if (media_[i].cursor != media_[i].data.size()) {
                std::printf("UNEXPECTED: %s: dev%d read %zu of %zu bytes\n", phase.c_str(), i,
                            media_[i].cursor, media_[i].data.size());
                failures++;
            }
            total += media_[i].cursor;
        }
        std::printf("%s: read back %llu bytes\n", phase.c_str(), total);
    }

    // BACKUP or RESTORE on a created set: configure, open, run the device
    // loops to VD_E_CLOSE, Close.
    bool transfer(ClientVirtualDeviceSet &set, const std::string &phase) {
        open_devices(set, phase);
        run_devices(set, phase, Action::None, VD_E_CLOSE);
        expect(phase, "Close", set.Close(), NOERROR);
        return statement(phase) == VDISIM_OUTCOME_SUCCEEDED;
    }

    // The VIRTUAL_DEVICE list of a statement over this client's devices.
    std::string device_list() const {
        std::string l;
        for (int i = 0; i < NDEV; i++)
            l += (i ? ", VIRTUAL_DEVICE='" : "VIRTUAL_DEVICE='") + names_[i] + "'";
        return l;
    }

    // BACKUP or RESTORE started through sqlcmd on PATH, on its own thread,
    // while this thread configures, opens and runs the devices.
    bool transfer_sqlcmd(ClientVirtualDeviceSet &set, const std::string &phase,
                         const std::string &tsql) {
        std::string out;
        int status = -1;
        std::thread sql([&] {
            const std::string cmd = "sqlcmd -S localhost -E -b -Q \"" + tsql + "\" 2>&1";
            FILE *p = popen(cmd.c_str(), "r");
            if (p == nullptr)
                return;
            char buf[512];
            while (std::fgets(buf, sizeof buf, p) != nullptr)
                out += buf;
            status = pclose(p);
        });
        open_devices(set, phase);
        run_devices(set, phase, Action::None, VD_E_CLOSE);
        expect(phase, "Close", set.Close(), NOERROR);
        sql.join();
        for (size_t at = 0; at < out.size();) {
            size_t nl = out.find('\n', at);
            if (nl == std::string::npos)
                nl = out.size();
            std::printf("%s: sqlcmd: %s\n", phase.c_str(), out.substr(at, nl - at).c_str());
            at = nl + 1;
        }
        const int code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
        std::printf("%s: sqlcmd exit status = %d\n", phase.c_str(), code);
        return code == 0;
    }

    // The media file of device `i` in `dir`.
    static std::string media_file(const std::string &dir, int i) {
        return dir + "/dev" + std::to_string(i) + ".media";
    }

    // Writes every device's stored media to its file in `dir`.
    bool save_media(const std::string &dir) const {
        for (int i = 0; i < NDEV; i++) {
            const std::string path = media_file(dir, i);
            const std::vector<uint8_t> &d = media_[i].data;
            FILE *f = std::fopen(path.c_str(), "wb");
            bool ok = f != nullptr && std::fwrite(d.data(), 1, d.size(), f) == d.size();
            if (f != nullptr && std::fclose(f) != 0)
                ok = false;
            if (!ok) {
                std::printf("UNEXPECTED: cannot write %s\n", path.c_str());
                failures++;
                return false;
            }
        }
        std::printf("backup: media saved in %s\n", dir.c_str());
        return true;
    }

    // Reads every device's media back from its file in `dir`.
    bool load_media(const std::string &dir) {
        for (int i = 0; i < NDEV; i++) {
            const std::string path = media_file(dir, i);
            FILE *f = std::fopen(path.c_str(), "rb");
            if (f == nullptr) {
                std::printf("UNEXPECTED: cannot read %s\n", path.c_str());
                failures++;
                return false;
            }
            media_[i] = Media();
            uint8_t buf[65536];
            size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
                media_[i].data.insert(media_[i].data.end(), buf, buf + n);
            const bool ok = !std::ferror(f);
            std::fclose(f);
            if (!ok) {
                std::printf("UNEXPECTED: cannot read %s\n", path.c_str());
                failures++;
                return false;
            }
        }
        std::printf("restore: media loaded from %s\n", dir.c_str());
        return true;
    }

    ClientVirtualDevice *devs_[NDEV] = {};

private:
    std::vector<std::string> names_;
    Media media_[NDEV];
};

int finish(const char *mode, bool ok) {
    std::printf("RESULT %s %s\n", mode, ok ? "SUCCEEDED" : "FAILED");
    if (failures)
        return 1;
    return ok ? 0 : 3;
}

} // namespace

int main(int argc, char **argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    std::printf("sample cpp-linux mode=%s devices=%d\n", mode.c_str(), NDEV);
    Client c;

    if (mode == "roundtrip") {
        bool ok;
        {
            ClientVirtualDeviceSet set; // on the stack, as the Linux API allows
            c.create(set, "backup", "Create");
            ok = c.transfer(set, "backup") && c.check_stored("backup");
        }
        if (!ok)
            return finish(mode.c_str(), false);
        // RESTORE with a fresh object, as a separate restore run would.
        auto *set = new ClientVirtualDeviceSet();
        c.create(*set, "restore", "Create");
        ok = c.transfer(*set, "restore");
        c.check_read_back("restore");
        delete set;
        return finish(mode.c_str(), ok);
    }
    const bool sqlcmd_half = mode == "sqlcmd-backup" || mode == "sqlcmd-restore";
    if (mode == "sqlcmd-roundtrip" || (sqlcmd_half && argc > 3)) {
        const std::string db = argc > 2 ? argv[2] : "sales";
        const std::string dir = sqlcmd_half ? argv[3] : "";
        bool ok = true;
        if (mode == "sqlcmd-backup" && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
            // Before the BACKUP runs: a backup whose media cannot be kept
            // must not be taken.
            std::printf("UNEXPECTED: cannot make the media directory %s\n", dir.c_str());
            return finish(mode.c_str(), false);
        }
        if (mode != "sqlcmd-restore") {
            ClientVirtualDeviceSet set;
            c.create(set, "backup", "Create");
            ok = c.transfer_sqlcmd(set, "backup",
                                   "BACKUP DATABASE [" + db + "] TO " + c.device_list() +
                                       " WITH INIT, CHECKSUM") &&
                 c.check_stored("backup");
            if (ok && mode == "sqlcmd-backup")
                ok = c.save_media(dir);
        } else {
            ok = c.load_media(dir);
        }
        if (!ok || mode == "sqlcmd-backup")
            return finish(mode.c_str(), ok);
        auto *set = new ClientVirtualDeviceSet();
        c.create(*set, "restore", "Create");
        ok = c.transfer_sqlcmd(*set, "restore",
                               "RESTORE DATABASE [" + db + "] FROM " + c.device_list() +
                                   " WITH REPLACE");
        c.check_read_back("restore");
        delete set;
        return finish(mode.c_str(), ok);
    }
    if (mode == "reuse") {
        auto *set = new ClientVirtualDeviceSet();
        c.create(*set, "backup", "Create");
        if (!(c.transfer(*set, "backup") && c.check_stored("backup")))
            return finish(mode.c_str(), false);
        // Close returned NOERROR: the same object may create again.
        c.create(*set, "reuse", "create again on the same object");
        for (int i = 0; i < NDEV; i++) {
            VDC_Command *cmd = reinterpret_cast<VDC_Command *>(&c); // must come back null
            expect("reuse", "old dev" + std::to_string(i) + " GetCommand",
                   c.devs_[i]->GetCommand(0, &cmd), VD_E_PROTOCOL);
            if (cmd != nullptr) {
                std::printf("UNEXPECTED: reuse: old dev%d GetCommand left a command\n", i);
                failures++;
            }
        }
        bool ok = c.transfer(*set, "restore");
        c.check_read_back("restore");
        delete set;
        return finish(mode.c_str(), ok);
    }
    if (mode == "close-open" || mode == "abort" || mode == "server-abort") {
        auto *set = new ClientVirtualDeviceSet();
        c.create(*set, "backup", "Create");
        c.open_devices(*set, "backup");
        if (mode == "close-open") {
            // Close already released the set: the devices are invalid.
            c.run_devices(*set, "backup", Action::Close, VD_E_PROTOCOL);
            expect("backup", "Close again", set->Close(), VD_E_PROTOCOL);
        } else {
            c.run_devices(*set, "backup", mode == "abort" ? Action::Abort : Action::None,
                          VD_E_ABORT);
            expect("backup", "Close after abort", set->Close(), NOERROR);
        }
        bool ok = c.statement("backup") == VDISIM_OUTCOME_SUCCEEDED;
        delete set;
        return finish(mode.c_str(), ok);
    }
    std::fprintf(stderr, "usage: %s roundtrip|reuse|close-open|abort|server-abort|sqlcmd-roundtrip [database]|sqlcmd-backup database dir|sqlcmd-restore database dir\n", argv[0]);
    return 2;
}
