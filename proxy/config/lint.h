// Lint: legal but suspicious configurations (warnings; errors under strict = true / --strict).
#pragma once

#include <vector>

#include "config/model.h"

namespace sluice::config {

// Findings for a config that passed validation, in file order:
// - an alias named prod/production/live sending traffic to $LATEST;
// - a published version that no alias lists and no route pins ($LATEST is exempt: it is the
//   editable draft and is normally unused);
// - an alias with 100% of its traffic on one version that still lists others at weight 0.
std::vector<Diagnostic> lint(const Config& config);

}  // namespace sluice::config
