#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace deliverd::core {

void Histogram::observe(double v) {
  auto it = std::lower_bound(bounds_->begin(), bounds_->end(), v);
  if (it != bounds_->end()) counts_[it - bounds_->begin()].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::bucket_counts() const {
  std::vector<uint64_t> out;
  out.reserve(counts_.size());
  for (const auto& c : counts_) out.push_back(c.load(std::memory_order_relaxed));
  return out;
}

double Histogram::quantile(double q) const {
  std::vector<uint64_t> counts = bucket_counts();
  uint64_t total = count();
  if (total == 0) return 0;
  double rank = q * static_cast<double>(total);
  double seen = 0;
  double lower = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    double upper = (*bounds_)[i];
    if (seen + static_cast<double>(counts[i]) >= rank && counts[i] > 0) {
      return lower + (upper - lower) * ((rank - seen) / static_cast<double>(counts[i]));
    }
    seen += static_cast<double>(counts[i]);
    lower = upper;
  }
  return bounds_->empty() ? 0 : bounds_->back();  // in the +Inf bucket
}

template <class T>
T& Family<T>::with(const std::vector<std::string>& values) {
  if (values.size() != labels_.size()) throw std::logic_error("metric " + name_ + ": wrong number of label values");
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) it = children_.emplace(values, make()).first;
  return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

namespace {
template <class F>
F& get_or_make(std::map<std::string, std::unique_ptr<F>>& m, const std::string& name, std::unique_ptr<F> fresh) {
  auto it = m.find(name);
  if (it != m.end()) return *it->second;
  return *m.emplace(name, std::move(fresh)).first->second;
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string label_set(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra = {}) {
  if (names.empty() && extra.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out.push_back(',');
    out += names[i] + "=\"" + escape_label(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!names.empty()) out.push_back(',');
    out += extra;
  }
  out.push_back('}');
  return out;
}

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}
}  // namespace

Family<Counter>& Registry::counter(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  return get_or_make(counters_, name, std::make_unique<Family<Counter>>(name, help, std::move(labels)));
}

Family<Gauge>& Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  std::lock_guard lock(mu_);
  return get_or_make(gauges_, name, std::make_unique<Family<Gauge>>(name, help, std::move(labels)));
}

HistogramFamily& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                     std::vector<std::string> labels) {
  std::sort(bounds.begin(), bounds.end());
  std::lock_guard lock(mu_);
  return get_or_make(histograms_, name,
                     std::make_unique<HistogramFamily>(name, help, std::move(labels), std::move(bounds)));
}

namespace {
thread_local bool skip_fn_gauges = false;
}

void Registry::skip_fn_gauges_on_this_thread() { skip_fn_gauges = true; }

void Registry::gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn) {
  if (skip_fn_gauges) return;
  std::lock_guard lock(mu_);
  fn_gauges_[name] = FnGauge{help, std::move(fn)};
}

bool Registry::is_public(const std::vector<std::string>& labels) {
  for (const auto& l : labels)
    if (l == "account" || l == "mailbox") return false;
  return true;
}

std::string Registry::render(Audience audience) const {
  std::string out;
  out.reserve(4096);
  std::lock_guard lock(mu_);
  auto shown = [audience](const auto& fam) { return audience == Audience::Operators || is_public(fam->labels()); };
  // Named, not bound: clang before 16 cannot capture structured bindings in the lambdas below.
  for (const auto& entry : counters_) {
    const std::string& name = entry.first;
    const auto& fam = entry.second;
    if (!shown(fam)) continue;
    header(out, name, fam->help(), "counter");
    fam->each_child([&](const auto& values, const Counter& c) {
      out += name + label_set(fam->labels(), values) + " " + format_number(c.value()) + "\n";
    });
  }
  for (const auto& entry : gauges_) {
    const std::string& name = entry.first;
    const auto& fam = entry.second;
    if (!shown(fam)) continue;
    header(out, name, fam->help(), "gauge");
    fam->each_child([&](const auto& values, const Gauge& g) {
      out += name + label_set(fam->labels(), values) + " " + format_number(g.value()) + "\n";
    });
  }
  for (const auto& [name, g] : fn_gauges_) {
    header(out, name, g.help, "gauge");
    out += name + " " + format_number(g.fn()) + "\n";
  }
  for (const auto& entry : histograms_) {
    const std::string& name = entry.first;
    const auto& fam = entry.second;
    if (!shown(fam)) continue;
    header(out, name, fam->help(), "histogram");
    fam->each_child([&](const auto& values, const Histogram& h) {
      std::vector<uint64_t> counts = h.bucket_counts();
      uint64_t cumulative = 0;
      const auto& bounds = fam->bounds();
      for (size_t i = 0; i < bounds.size(); ++i) {
        cumulative += counts[i];
        out += name + "_bucket" + label_set(fam->labels(), values, "le=\"" + format_number(bounds[i]) + "\"") + " " +
               std::to_string(cumulative) + "\n";
      }
      // Another loop may observe between the reads: the totals never fall below the buckets.
      uint64_t total = std::max(cumulative, h.count());
      out += name + "_bucket" + label_set(fam->labels(), values, "le=\"+Inf\"") + " " + std::to_string(total) + "\n";
      out += name + "_sum" + label_set(fam->labels(), values) + " " + format_number(h.sum()) + "\n";
      out += name + "_count" + label_set(fam->labels(), values) + " " + std::to_string(total) + "\n";
    });
  }
  return out;
}

Registry& Registry::global() {
  static Registry r;
  return r;
}

}  // namespace deliverd::core
