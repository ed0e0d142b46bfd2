#include "admin/admin_routes.h"

#include "core/json_writer.h"
#include "core/metrics.h"

namespace deliverd::admin {

void add_health_routes(Router& router, ReadinessProbe readiness_probe) {
  router.add("GET", "/healthz", [](const Request&, Respond respond) {
    Response r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "ok\n";
    respond(std::move(r));
  });

  router.add("GET", "/readyz", [probe = std::move(readiness_probe)](const Request&, Respond respond) {
    auto answer = [respond](ReadinessChecks checks) {
      bool ready = true;
      core::JsonWriter w;
      w.begin_object().key("checks").begin_object();
      for (const auto& [name, ok] : checks) {
        w.field(name, ok);
        ready = ready && ok;
      }
      w.end_object().field("status", ready ? "ready" : "not_ready").end_object();
      Response r;
      r.status = ready ? 200 : 503;
      r.body = w.take();
      respond(std::move(r));
    };
    if (!probe) return answer({});
    probe(std::move(answer));
  });

  router.add("GET", "/metrics", [](const Request&, Respond respond) {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = core::Registry::global().render(core::Registry::Audience::Public);
    respond(std::move(r));
  });
}

}  // namespace deliverd::admin
