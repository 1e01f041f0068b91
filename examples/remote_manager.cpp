// Python's "using a remote manager" example: one program serves a queue,
// others connect by address and authkey and use it.
//
//   ./remote_manager                       serve, and start 2 clients itself
//   ./remote_manager serve HOST:PORT KEY   serve until 'done' messages arrive
//   ./remote_manager client HOST:PORT KEY  connect and put a few messages
//
// Python original:
//   class QueueManager(BaseManager): pass
//   QueueManager.register('get_queue', callable=lambda: queue)
//   m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//   m.get_server().serve_forever()
//   ...
//   m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
//   m.connect()
//   queue = m.get_queue()
//   queue.put('hello')
#include <mproc/mproc.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using Messages = mproc::QueueProxy<std::string>;

void client(std::string address, std::string authkey, int id) {
    auto m = mproc::Manager::connect(address, authkey);
    auto queue = m.lookup<Messages>("queue");
    auto seen = m.lookup<mproc::DictProxy<std::string, int>>("seen");
    for (int i = 0; i < 3; ++i) queue.put("hello " + std::to_string(i) + " from client " + std::to_string(id));
    seen["clients"] += 1;
    queue.put("done");
}

int serve(const std::string& address, const std::string& authkey, int clients, bool start_them) {
    mproc::Manager m;
    auto queue = m.Queue<std::string>();
    auto seen = m.dict<std::string, int>();
    m.publish("queue", queue);
    m.publish("seen", seen);
    const std::string bound = m.serve(address, authkey);
    std::printf("serving on %s\n", bound.c_str());

    std::vector<mproc::Process> started;
    if (start_them)  // spawned programs that know only the address and key
        for (int i = 0; i < clients; ++i)
            started.emplace_back(client, bound, authkey, i).start_method(mproc::StartMethod::spawn).start();

    int done = 0, messages = 0;
    while (done < clients) {
        const std::string msg = queue.get(mproc::Duration(60));
        if (msg == "done") ++done;
        else ++messages, std::printf("got: %s\n", msg.c_str());
    }
    bool ok = seen.get("clients", 0) == clients && messages == 3 * clients;
    for (auto& p : started) ok = p.join(mproc::Duration(30)) && p.exitcode() == 0 && ok;
    std::printf("%d messages from %d clients\n%s\n", messages, clients, ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    if (argc == 4 && std::strcmp(argv[1], "serve") == 0) return serve(argv[2], argv[3], 1, false);
    if (argc == 4 && std::strcmp(argv[1], "client") == 0) {
        client(argv[2], argv[3], 0);
        return 0;
    }
    return serve("127.0.0.1:0", "abracadabra", 2, true);
}
