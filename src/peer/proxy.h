// File: peer/proxy.h
//
// The peer's HTTP proxy (dfdaemon's, port 65001), in two modes:
//   - registry mirror: "GET /v2/<repo>/blobs/sha256:<d>" with no host in the request target goes
//     to the registry named by X-Dragonfly-Registry (when registryMirror.dynamic) or
//     registryMirror.url;
//   - forward proxy: an absolute "http://host/..." target, for hosts the config names (a
//     `proxies` rule or the whiteList); anything else gets 403. CONNECT is refused (405).
// GET requests matching a `proxies` rule (and, in mirror mode, blob GETs) are served from the
// piece store through the swarm: one task per blob (per filtered URL otherwise), Range answered
// with 206 + Content-Range as soon as the pieces covering it are present. Everything else
// (manifests, tokens, HEAD, PUT) is relayed to the origin directly, streamed. Client headers such
// as Authorization are used only to fetch from the origin; they are not part of the task.
#pragma once

#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "peer/config.h"
#include "peer/downloads.h"

namespace naiad::peer {

class Proxy {
 public:
  Proxy(const PeerConfig& config, Downloads* downloads, PeerMetrics* metrics);

  void Handle(const net::ServerRequest& request, net::ResponseWriter& writer);
  // The local API on the daemon's unix socket (`naiad get` uses it; only local users reach it):
  //   GET /v1/download  with X-Naiad-Url: <http(s) URL>, optional X-Dragonfly-Filter: a&b, and
  //                     the headers for the origin: the URL's content through the swarm, as the
  //                     proxy serves it (Range too), whatever host it names.
  //   GET /v1/tasks/<task id>/traffic: {"task_id", "origin_bytes", "peer_bytes"} so far.
  void HandleLocal(const net::ServerRequest& request, net::ResponseWriter& writer);

 private:
  struct Route {
    std::string url;     // the origin URL
    bool swarm = false;  // through the piece store
  };
  struct Rule {
    std::regex regex;
    ProxyRule config;
  };

  // Where a request goes; an error status (with the HTTP status to answer) when it is refused.
  absl::StatusOr<Route> Resolve(const net::ServerRequest& request) const;
  const Rule* MatchRule(const std::string& url) const;
  bool HostAllowed(const std::string& url) const;
  void ServeFromSwarm(const net::ServerRequest& request, const std::string& url,
                      const std::vector<std::string>& filtered, net::ResponseWriter& writer);
  void Relay(const net::ServerRequest& request, const std::string& url,
             net::ResponseWriter& writer);

  const PeerConfig config_;
  const std::vector<std::string> filtered_params_;
  Downloads* const downloads_;
  PeerMetrics* const metrics_;
  std::vector<Rule> rules_;
  std::vector<std::regex> white_list_;
  net::HttpClient client_;
};

}  // namespace naiad::peer
