// Out-of-line pieces of the plain config model.
#include "config/model.h"

namespace sluice::config {

std::string Diagnostic::to_string() const {
  // Appended piece by piece: GCC 12's -Wrestrict misfires on `":" + std::to_string(...)`.
  std::string out = file;
  if (pos.line != 0) {
    out.push_back(':');
    out.append(std::to_string(pos.line));
    out.push_back(':');
    out.append(std::to_string(pos.column));
  }
  out.append(": ");
  out.append(message);
  return out;
}

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::kH2:
      return "h2";
    case Protocol::kH2c:
      return "h2c";
    case Protocol::kHttp1:
      break;
  }
  return "http1";
}

}  // namespace sluice::config
