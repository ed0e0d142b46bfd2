#pragma once
// Method + path routing. A path is matched exactly, or segment by segment against a pattern
// with {name} segments ("/v1/mailboxes/{id}"); exact routes win over patterns. Unknown paths
// get 404, known paths with another method 405 (with Allow), both as JSON errors. HEAD is
// served by the GET handler.
#include <string>
#include <utility>
#include <vector>

#include "admin/http_types.h"

namespace deliverd::admin {

class Router {
 public:
  void add(std::string method, std::string path, Handler h);
  // Adds the route, or gives the route of that method and path a new handler (the admin API
  // takes over /metrics from the health routes to serve operators more).
  void set(std::string method, std::string path, Handler h);
  void dispatch(const Request& req, Respond respond) const;
  // (method, path) in registration order, e.g. for docs and tests.
  std::vector<std::pair<std::string, std::string>> routes() const;

 private:
  struct Route {
    std::string method, path;
    std::vector<std::string> segments;
    bool pattern = false;
    Handler handler;
  };
  static bool match(const Route& r, const std::vector<std::string_view>& segs, HeaderList* params);
  std::vector<Route> routes_;
};

}  // namespace deliverd::admin
