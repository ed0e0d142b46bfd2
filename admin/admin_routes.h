#pragma once
// Health and metrics endpoints: GET /healthz (liveness), GET /readyz (dependencies), GET /metrics
// (without a key: the series that name no tenant; add_api_routes lets operators' keys see all).
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "admin/router.h"

namespace deliverd::admin {

// The probe answers once, possibly later, with (check name, passed) pairs, e.g.
// {{"redis", true}, {"postgres", false}}. An empty list means ready.
using ReadinessChecks = std::vector<std::pair<std::string, bool>>;
using ReadinessProbe = std::function<void(std::function<void(ReadinessChecks)>)>;

void add_health_routes(Router& router, ReadinessProbe readiness_probe);

}  // namespace deliverd::admin
