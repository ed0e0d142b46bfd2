#pragma once
// Prometheus metrics registry. One registry serves every event loop of the process ([daemon]
// workers), so a figure is the sum over the loops without merging: values are relaxed atomics
// (an uncontended add costs a few nanoseconds), and the maps of families and of children (label
// values) are locked, since a loop may add a child while another renders.
// Families are created once at start-up; children on first use.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

namespace deliverd::core {

class Counter {
 public:
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_ = 0;
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1) { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_ = 0;
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds) : bounds_(bounds), counts_(bounds->size()) {}
  void observe(double v);
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  std::vector<uint64_t> bucket_counts() const;  // not cumulative
  // Estimated quantile (linear within the bucket), for benchmarks and status lines.
  double quantile(double q) const;

 private:
  const std::vector<double>* bounds_;
  std::vector<std::atomic<uint64_t>> counts_;
  std::atomic<double> sum_ = 0;
  std::atomic<uint64_t> count_ = 0;
};

template <class T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels)
      : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {}
  virtual ~Family() = default;
  // with({"delivered"}) for a family declared with labels {"status"}.
  T& with(const std::vector<std::string>& values);
  T& get() { return with({}); }  // for families without labels

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& labels() const { return labels_; }
  // Calls fn(label values, child) for each child, in order, under the family's lock.
  template <class Fn>
  void each_child(Fn&& fn) const {
    std::lock_guard lock(mu_);
    for (const auto& [values, child] : children_) fn(values, *child);
  }

 protected:
  virtual std::unique_ptr<T> make() {
    if constexpr (std::is_default_constructible_v<T>) return std::make_unique<T>();
    return nullptr;  // HistogramFamily overrides this
  }

 private:
  std::string name_, help_;
  std::vector<std::string> labels_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

class HistogramFamily : public Family<Histogram> {
 public:
  HistogramFamily(std::string name, std::string help, std::vector<std::string> labels, std::vector<double> bounds)
      : Family(std::move(name), std::move(help), std::move(labels)), bounds_(std::move(bounds)) {}
  const std::vector<double>& bounds() const { return bounds_; }

 protected:
  std::unique_ptr<Histogram> make() override { return std::make_unique<Histogram>(&bounds_); }

 private:
  std::vector<double> bounds_;
};

class Registry {
 public:
  Family<Counter>& counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  Family<Gauge>& gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  HistogramFamily& histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                             std::vector<std::string> labels = {});
  // A gauge whose value is read when scraped (queue depth, sessions open, …), on the thread that
  // renders. So only the primary loop's state may be read that way: on a thread marked with
  // skip_fn_gauges_on_this_thread() (another worker loop, holding its own copy of the same
  // state) a registration is ignored.
  void gauge_fn(const std::string& name, const std::string& help, std::function<double()> fn);
  static void skip_fn_gauges_on_this_thread();

  // Which series to render: all, or only those that name no tenant. Series labelled "account"
  // or "mailbox" tell one tenant's figures (breaker states, counts): they are for the platform's
  // operators, not for the open /metrics or for tenants' keys.
  enum class Audience : uint8_t { Operators, Public };
  // Prometheus text exposition format 0.0.4.
  std::string render(Audience audience = Audience::Operators) const;
  // Whether a family with these labels is rendered for the public audience.
  static bool is_public(const std::vector<std::string>& labels);

  // The process-wide registry the daemon exposes on /metrics.
  static Registry& global();

 private:
  mutable std::mutex mu_;  // the maps below; each family locks its own children
  std::map<std::string, std::unique_ptr<Family<Counter>>> counters_;
  std::map<std::string, std::unique_ptr<Family<Gauge>>> gauges_;
  std::map<std::string, std::unique_ptr<HistogramFamily>> histograms_;
  struct FnGauge {
    std::string help;
    std::function<double()> fn;
  };
  std::map<std::string, FnGauge> fn_gauges_;
};

}  // namespace deliverd::core
