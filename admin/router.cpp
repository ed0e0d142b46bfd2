#include "admin/router.h"

#include <exception>
#include <memory>

#include "core/log.h"

namespace deliverd::admin {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

void Router::add(std::string method, std::string path, Handler h) {
  Route r;
  for (auto s : split_path(path)) {
    r.segments.emplace_back(s);
    if (s.size() >= 2 && s.front() == '{' && s.back() == '}') r.pattern = true;
  }
  r.method = std::move(method);
  r.path = std::move(path);
  r.handler = std::move(h);
  routes_.push_back(std::move(r));
}

void Router::set(std::string method, std::string path, Handler h) {
  for (auto& r : routes_)
    if (r.method == method && r.path == path) {
      r.handler = std::move(h);
      return;
    }
  add(std::move(method), std::move(path), std::move(h));
}

std::vector<std::pair<std::string, std::string>> Router::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : routes_) out.emplace_back(r.method, r.path);
  return out;
}

bool Router::match(const Route& r, const std::vector<std::string_view>& segs, HeaderList* params) {
  if (r.segments.size() != segs.size()) return false;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& want = r.segments[i];
    if (r.pattern && want.size() >= 2 && want.front() == '{' && want.back() == '}') {
      if (segs[i].empty()) return false;
      if (params) params->emplace_back(want.substr(1, want.size() - 2), std::string(segs[i]));
    } else if (want != segs[i]) {
      return false;
    }
  }
  return true;
}

void Router::dispatch(const Request& req, Respond respond) const {
  auto segs = split_path(req.path);
  bool exact_path = !req.path.empty() && req.path.front() == '/';
  const Route* found = nullptr;
  std::string allow;
  for (int pass = 0; pass < 2 && !found && exact_path; ++pass) {
    for (const auto& r : routes_) {
      if (r.pattern != (pass == 1)) continue;
      if (pass == 0 ? r.path != req.path : !match(r, segs, nullptr)) continue;
      if (r.method == req.method || (req.method == "HEAD" && r.method == "GET")) {
        found = &r;
        break;
      }
      if (allow.find(r.method) == std::string::npos) allow += (allow.empty() ? "" : ", ") + r.method;
    }
  }
  if (!found) {
    if (allow.empty()) return respond(json_error(404, "not_found", "no such endpoint: " + req.path));
    Response r = json_error(405, "method_not_allowed", req.method + " is not allowed on " + req.path);
    r.headers.emplace_back("Allow", allow);
    return respond(std::move(r));
  }
  // A handler that throws still gets the client an answer, and only one.
  auto answered = std::make_shared<bool>(false);
  Respond once = [answered, respond](Response r) {
    if (*answered) return;
    *answered = true;
    respond(std::move(r));
  };
  try {
    if (found->pattern) {
      Request with_params = req;
      match(*found, segs, &with_params.params);
      found->handler(with_params, once);
    } else {
      found->handler(req, once);
    }
  } catch (const std::exception& e) {
    core::log_error("http_handler_exception", {{"path", found->path}, {"error", e.what()}});
    once(json_error(500, "internal_error", "internal error"));
  }
}

}  // namespace deliverd::admin
