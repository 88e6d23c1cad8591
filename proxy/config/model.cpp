// Out-of-line pieces of the plain config model.
#include "config/model.h"

namespace sluice::config {

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (pos.line != 0) out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  out += ": ";
  out += message;
  return out;
}

}  // namespace sluice::config
