// Python's concurrent.futures docs, "ThreadPoolExecutor Example" (load_url
// with as_completed and a future -> url dict), adapted to a computation in a
// ProcessPoolExecutor: "loading" a page builds it from its URL, and the
// nonexistent host raises, as urlopen would.
//
//   ./futures_as_completed [--start-method fork|spawn|forkserver]
//
// Python original:
//   URLS = ['http://www.foxnews.com/', 'http://www.cnn.com/',
//           'http://europe.wsj.com/', 'http://www.bbc.co.uk/',
//           'http://nonexistent-subdomain.python.org/']
//
//   def load_url(url, timeout):
//       with urllib.request.urlopen(url, timeout=timeout) as conn:
//           return conn.read()
//
//   with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
//       future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
//       for future in concurrent.futures.as_completed(future_to_url):
//           url = future_to_url[future]
//           try:
//               data = future.result()
//           except Exception as exc:
//               print('%r generated an exception: %s' % (url, exc))
//           else:
//               print('%r page is %d bytes' % (url, len(data)))
//
// The exception is a user type registered with MPROC_REGISTER_EXCEPTION, so
// it reaches the parent as itself (catch (const URLError&) matches), with
// remote_origin() naming the worker that raised it.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "start_method_arg.hpp"

struct URLError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
MPROC_REGISTER_EXCEPTION(URLError);

// The stand-in for urlopen(url).read(): a page of 1000 lines naming the url.
std::string load_url(std::string url, int /*timeout*/) {
    if (url.find("nonexistent") != std::string::npos)
        throw URLError("<urlopen error [Errno -2] Name or service not known>");
    std::string page;
    for (int i = 0; i < 1000; ++i) page += url + " line " + std::to_string(i) + "\n";
    return page;
}

int main(int argc, char** argv) {
    mproc::init(argc, argv);
    start_method_from_args(argc, argv);
    const std::vector<std::string> URLS{"http://www.foxnews.com/", "http://www.cnn.com/", "http://europe.wsj.com/",
                                        "http://www.bbc.co.uk/", "http://nonexistent-subdomain.python.org/"};
    bool ok = true;
    int pages = 0, errors = 0;
    {
        mproc::ProcessPoolExecutor executor(5);
        std::unordered_map<mproc::Future<std::string>, std::string> future_to_url;
        std::vector<mproc::Future<std::string>> futures;
        for (const auto& url : URLS) {
            auto fut = executor.submit(load_url, url, 60);
            future_to_url.emplace(fut, url);
            futures.push_back(fut);
        }
        for (auto& future : mproc::as_completed(futures)) {
            const std::string& url = future_to_url.at(future);
            try {
                std::string data = future.result();
                std::printf("'%s' page is %zu bytes\n", url.c_str(), data.size());
                ok = ok && data == load_url(url, 60);
                ++pages;
            } catch (const URLError& exc) {
                auto origin = mproc::remote_origin(exc);
                std::printf("'%s' generated an exception: %s (in %s)\n", url.c_str(), exc.what(),
                            origin ? origin->process_name.c_str() : "this process?");
                ok = ok && url.find("nonexistent") != std::string::npos && origin &&
                     origin->pid != mproc::current_process().pid();
                ++errors;
            }
        }
    }
    ok = ok && pages == 4 && errors == 1;
    std::printf("%s\n", ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
}
